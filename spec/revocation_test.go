package spec

import (
	"path"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRevocationErrors asserts the FILE:LINE: message of every bad
// Revocation in testdata/invalid/revocation.yaml: a bad serial, both
// serials and issuedBefore, neither, a bad time, a hold and an unknown
// reason, and (from Validate) a Certificate that does not exist.
func TestRevocationErrors(t *testing.T) {
	const file = "revocation.yaml"
	objs, errs := ParseFile(file, readTestdata(t, path.Join("testdata/invalid", file)))
	errs = append(errs, Validate(objs)...)
	errs.Sort()
	reasons := "unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, aACompromise"
	notExist := `spec.certificate: Certificate "web" does not exist (a Revocation names a Certificate of the same revision)`
	want := []string{
		`revocation.yaml:5: ` + notExist,
		`revocation.yaml:6: spec.serials[0]: "zz12" is not a serial number: want a positive hex number of at most 20 octets (e.g. "3a:f2:09" or "3AF209")`,
		`revocation.yaml:6: spec.serials[1]: "0" is not a serial number: want a positive hex number of at most 20 octets (e.g. "3a:f2:09" or "3AF209")`,
		`revocation.yaml:6: spec.serials[3]: duplicate of spec.serials[2]`,
		`revocation.yaml:12: spec: only one of serials, issuedBefore may be set`,
		`revocation.yaml:13: ` + notExist,
		`revocation.yaml:22: ` + notExist,
		`revocation.yaml:23: spec.issuedBefore: "March 1st" is not an RFC 3339 time (e.g. "2026-03-01T00:00:00Z")`,
		`revocation.yaml:24: spec.reason: "certificateHold" is not supported: a revocation in certops is final, never a hold; use one of ` + reasons,
		`revocation.yaml:30: spec.certificate: "Web" is not a valid name (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)`,
		`revocation.yaml:32: spec.reason: "stolen" is not an RFC 5280 reason (want one of ` + reasons + `)`,
		`revocation.yaml:37: spec: one of serials, issuedBefore is required`,
		`revocation.yaml:38: ` + notExist,
	}
	if diff := cmp.Diff(errorStrings(t, errs), want); diff != "" {
		t.Errorf("errors (-got +want):\n%s", diff)
	}
}

func TestRevocationValid(t *testing.T) {
	const data = `apiVersion: certops/v1
kind: Issuer
metadata: {name: ca}
spec:
  localCA: {certFile: /ca.crt, keyFile: /ca.key, publicURL: "http://127.0.0.1:8443/x"}
---
apiVersion: certops/v1
kind: Certificate
metadata: {name: web}
spec: {issuerRef: ca, dnsNames: [web.example.com]}
---
apiVersion: certops/v1
kind: Revocation
metadata: {name: leak}
spec: {certificate: web, serials: ["00:3A:f2"], reason: keyCompromise}
`
	objs, errs := ParseFile("ok.yaml", []byte(data))
	errs = append(errs, Validate(objs)...)
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	if r := objs[2].Revocation(); r == nil || r.Serials[0] != "00:3A:f2" {
		t.Errorf("Revocation() = %+v", r)
	}
}

func TestPublicURLErrors(t *testing.T) {
	const data = `apiVersion: certops/v1
kind: Issuer
metadata: {name: ca}
spec:
  localCA: {certFile: /ca.crt, keyFile: /ca.key, publicURL: "http://pki.example.com"}
---
apiVersion: certops/v1
kind: Issuer
metadata: {name: cb}
spec:
  localCA: {certFile: /ca.crt, keyFile: /ca.key, publicURL: "https://pki.example.com/?a=b"}
`
	_, errs := ParseFile("i.yaml", []byte(data))
	want := []string{
		`i.yaml:5: spec.localCA.publicURL: must use https: http is allowed only for loopback hosts, and "pki.example.com" is not one`,
		`i.yaml:11: spec.localCA.publicURL: "https://pki.example.com/?a=b" must not have a query or fragment: certops appends /pki/v1/ISSUER/crl to it`,
	}
	if diff := cmp.Diff(errorStrings(t, errs), want); diff != "" {
		t.Errorf("errors (-got +want):\n%s", diff)
	}
}

func TestNormalizeSerial(t *testing.T) {
	for in, want := range map[string]string{
		"3A:F2:09": "3af209", "003af209": "3af209", "0B77E2": "b77e2", "0": "", "": "", "xyz": "", "-1": "",
		"0102030405060708090a0b0c0d0e0f101112131415": "", // 21 octets
	} {
		if got := NormalizeSerial(in); got != want {
			t.Errorf("NormalizeSerial(%q) = %q, want %q", in, got, want)
		}
	}
}

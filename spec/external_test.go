package spec

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestExternalIssuerErrors(t *testing.T) {
	data := []byte(`apiVersion: certops/v1
kind: Issuer
metadata: {name: relative}
spec:
  external:
    command: [sign.sh]
    timeout: 11m
    env: {"1BAD": x, CERTOPS_REQUEST: y, GOOD: z}
    caBundleFile: ca.pem
---
apiVersion: certops/v1
kind: Issuer
metadata: {name: empty}
spec:
  external:
    command: []
    timeout: -1s
---
apiVersion: certops/v1
kind: Issuer
metadata: {name: both}
spec:
  localCA: {certFile: /ca.crt, keyFile: /ca.key}
  external: {command: [/bin/sign], caBundleFile: /ca.pem}
---
apiVersion: certops/v1
kind: Issuer
metadata: {name: good}
spec:
  external: {command: [/bin/sign, --flag], timeout: 10m, caBundleFile: /ca.pem}
`)
	objs, errs := ParseFile("issuers.yaml", data)
	want := []string{
		`issuers.yaml:6: spec.external.command[0]: "sign.sh" is not an absolute path`,
		`issuers.yaml:7: spec.external.timeout: "11m" is longer than the limit of 10m0s`,
		`issuers.yaml:8: spec.external.env["1BAD"]: "1BAD" is not a valid environment variable name (letters, digits and '_', not starting with a digit)`,
		`issuers.yaml:8: spec.external.env["CERTOPS_REQUEST"]: "CERTOPS_REQUEST" is reserved: certops sets the CERTOPS_ variables itself`,
		`issuers.yaml:9: spec.external.caBundleFile: "ca.pem" is not an absolute path`,
		`issuers.yaml:15: spec.external.caBundleFile: required`,
		`issuers.yaml:16: spec.external.command: required: the command's argv, its first element an absolute path`,
		`issuers.yaml:17: spec.external.timeout: "-1s" must be positive`,
		`issuers.yaml:22: spec: only one of localCA, acme, external, vault may be set`,
	}
	if diff := cmp.Diff(errorStrings(t, errs), want); diff != "" {
		t.Errorf("errors (-got +want):\n%s", diff)
	}
	good := objs[len(objs)-1]
	if good.Name != "good" {
		t.Fatalf("last object is %s, want good", good.Name)
	}
	if got := good.Issuer().External.TimeoutDuration(); got != MaxExternalTimeout {
		t.Errorf("timeout = %s, want %s", got, MaxExternalTimeout)
	}
	if got := (&ExternalIssuer{}).TimeoutDuration(); got != DefaultExternalTimeout {
		t.Errorf("default timeout = %s, want %s", got, DefaultExternalTimeout)
	}
}

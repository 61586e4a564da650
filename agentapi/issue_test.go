package agentapi

import (
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// checkIssue needs neither a database nor an issuer.
func TestCheckIssue(t *testing.T) {
	sp := &spec.CertificateSpec{IssuerRef: "internal-ca", CommonName: "shop.example.com",
		DNSNames:   []string{"shop.example.com"},
		PrivateKey: spec.PrivateKey{Algorithm: "ECDSA", Size: 256, RotationPolicy: "Always"}}
	c := &certEntry{spec: sp, specHash: assign.SpecHash(sp)}
	csrFor := func(a agentproto.Assignment) string {
		key, err := pki.GenerateKey(a.Key)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := pki.NewCSR(key, a)
		if err != nil {
			t.Fatal(err)
		}
		return string(csr)
	}
	good := csrFor(c.assignment("shop"))
	other := c.assignment("shop")
	other.DNSNames = []string{"evil.example.com"}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	backingOff := &state.Deployment{SpecHash: c.specHash, Failures: 2, LastError: "CA down", NotBefore: now.Add(90 * time.Second)}
	oldBackoff := &state.Deployment{SpecHash: "old", Failures: 2, NotBefore: now.Add(time.Hour)}

	for _, tc := range []struct {
		name     string
		c        *certEntry
		d        *state.Deployment
		req      agentproto.IssueRequest
		code     agentproto.Code // of err; "" for none
		retry    time.Duration
		mismatch bool
	}{
		{"not assigned", nil, nil, agentproto.IssueRequest{SpecHash: c.specHash, CSRPEM: good}, agentproto.CodeNotFound, 0, false},
		{"stale spec", c, nil, agentproto.IssueRequest{SpecHash: "old", CSRPEM: good}, agentproto.CodeConflict, 0, false},
		{"backing off", c, backingOff, agentproto.IssueRequest{SpecHash: c.specHash, CSRPEM: good}, agentproto.CodeBackoff, 90 * time.Second, false},
		{"backoff of an older spec", c, oldBackoff, agentproto.IssueRequest{SpecHash: c.specHash, CSRPEM: good}, "", 0, false},
		{"not a CSR", c, nil, agentproto.IssueRequest{SpecHash: c.specHash, CSRPEM: "hello"}, agentproto.CodeInvalid, 0, false},
		{"CSR for other names", c, nil, agentproto.IssueRequest{SpecHash: c.specHash, CSRPEM: csrFor(other)}, "", 0, true},
		{"matching CSR", c, nil, agentproto.IssueRequest{SpecHash: c.specHash, CSRPEM: good}, "", 0, false},
	} {
		csr, mismatch, err := checkIssue(tc.c, tc.d, "shop", tc.req, now, time.Minute)
		switch {
		case tc.code != "":
			if err == nil || failure.CodeOf(err) != tc.code || failure.RetryAfterOf(err) != tc.retry {
				t.Errorf("%s: got %v (code %q, Retry-After %s), want code %q, Retry-After %s",
					tc.name, err, failure.CodeOf(err), failure.RetryAfterOf(err), tc.code, tc.retry)
			}
		case err != nil:
			t.Errorf("%s: unexpected error %v", tc.name, err)
		case (mismatch != nil) != tc.mismatch || csr == nil:
			t.Errorf("%s: got mismatch %v, csr %v; want mismatch %v and the CSR", tc.name, mismatch, csr != nil, tc.mismatch)
		}
	}
}

package revoke_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/issuer"
	"github.com/certops/certops/revoke"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit/storekit"
)

// fakeRevokers is an ACME CA that fails its first call and then revokes.
type fakeRevokers struct{ calls []string }

func (f *fakeRevokers) Revoker(name string) (issuer.Revoker, error) { return f, nil }

func (f *fakeRevokers) Revoke(_ context.Context, certPEM string, reason int) error {
	f.calls = append(f.calls, certPEM)
	if len(f.calls) == 1 {
		return errors.New("urn:ietf:params:acme:error:serverInternal: try later")
	}
	return nil
}

// A revoked serial of an ACME issuer is sent to the CA once claimed; a
// failure is recorded and waits ACMERetry; a success is final. Serials of
// a local CA are never sent. (Pebble's side: issuer.TestACMERevokeAtPebble.)
func TestACMERevokerRecordsOutcomes(t *testing.T) {
	st := storekit.Open(t)
	ctx := context.Background()
	acmeIssuer := &spec.Object{Kind: spec.KindIssuer, Name: "le", Spec: &spec.IssuerSpec{ACME: &spec.ACMEIssuer{
		DirectoryURL: "https://127.0.0.1:1/dir", AccountKeyFile: "/a.key",
		Challenge: spec.ACMEChallenge{HTTP01: &spec.HTTP01Challenge{Webroot: "/w"}}}}}
	local := &spec.Object{Kind: spec.KindIssuer, Name: "ca", Spec: &spec.IssuerSpec{LocalCA: &spec.LocalCAIssuer{CertFile: "/c", KeyFile: "/k"}}}
	web := &spec.Object{Kind: spec.KindCertificate, Name: "web", Spec: &spec.CertificateSpec{IssuerRef: "le", CommonName: "web.example.com"}}
	intra := &spec.Object{Kind: spec.KindCertificate, Name: "intra", Spec: &spec.CertificateSpec{IssuerRef: "ca", CommonName: "intra.example.com"}}
	now := time.Now()
	for _, v := range []state.CertificateVersion{
		{Certificate: "web", Agent: "a", Serial: "abc1", Issuer: "le", CertPEM: "PEM-web"},
		{Certificate: "intra", Agent: "a", Serial: "abc2", Issuer: "ca", CertPEM: "PEM-intra"},
	} {
		v.SpecHash, v.SHA256, v.NotBefore, v.NotAfter, v.IssuedAt = "h", "s", now, now.Add(time.Hour), now
		if _, err := st.RecordIssuance(ctx, store.Issuance{Version: v, RenewAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	rev := state.Revision{Ref: "main", Commit: strings.Repeat("1", 40)}
	storekit.Apply(t, st, rev, state.Status{}, storekit.Desired(acmeIssuer, local, web, intra,
		&spec.Object{Kind: spec.KindRevocation, Name: "r1", Spec: &spec.RevocationSpec{Certificate: "web", Serials: []string{"ABC1"}, Reason: "superseded"}},
		&spec.Object{Kind: spec.KindRevocation, Name: "r2", Spec: &spec.RevocationSpec{Certificate: "intra", Serials: []string{"abc2"}, Reason: "superseded"}}))

	ca := &fakeRevokers{}
	r := revoke.NewACMERevoker(st, ca, 0, nil)
	if n, err := r.Once(ctx); err != nil || n != 1 || len(ca.calls) != 1 || ca.calls[0] != "PEM-web" {
		t.Fatalf("first pass: %d, %v, calls %q; want one call for web", n, err, ca.calls)
	}
	revs, err := st.CertificateRevocations(ctx, "web")
	if err != nil || len(revs) != 1 || revs[0].ACMEState != store.ACMERevocationPending || !strings.Contains(revs[0].ACMEError, "serverInternal") || revs[0].ACMETrials != 1 {
		t.Fatalf("after a failure: %+v, %v", revs, err)
	}
	// The failed attempt waits ACMERetry: the next pass claims nothing.
	if n, err := r.Once(ctx); err != nil || n != 0 {
		t.Errorf("second pass: %d, %v; want nothing (retry later)", n, err)
	}
	if err := st.RecordACMERevocation(ctx, revs[0].ID, "", now, revoke.ACMEMaxAttempts); err != nil {
		t.Fatal(err)
	}
	revs, _ = st.CertificateRevocations(ctx, "web")
	if revs[0].ACMEState != store.ACMERevocationDone || revs[0].ACMEError != "" {
		t.Errorf("after success: %+v", revs[0])
	}
	intraRevs, _ := st.CertificateRevocations(ctx, "intra")
	if len(intraRevs) != 1 || intraRevs[0].ACMEState != "" {
		t.Errorf("local CA revocation: %+v; want no ACME state", intraRevs)
	}
}

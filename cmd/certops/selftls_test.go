package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certops/certops/issuer"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/spec"
)

// The self-issued certificate is renewed at two thirds of its life, not
// before; until the issuer exists the temporary one is served.
func TestSelfIssuedRenewsAtTwoThirds(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files := spec.LocalCAIssuer{CertFile: filepath.Join(dir, "ca.crt"), KeyFile: filepath.Join(dir, "ca.key")}
	if err := os.WriteFile(files.CertFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.KeyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	reg := issuer.NewRegistry(logger)
	s, err := newSelfIssued("internal-ca", []string{"localhost"}, reg, logger)
	if err != nil {
		t.Fatal(err)
	}
	temporary, _ := s.getCertificate(nil)
	ctx := context.Background()
	if err := s.issue(ctx); err == nil {
		t.Fatal("issued without the issuer")
	}
	if c, _ := s.getCertificate(nil); c != temporary {
		t.Fatal("the temporary certificate was replaced without an issuance")
	}
	reg.Sync([]*spec.Object{{Kind: spec.KindIssuer, Name: "internal-ca", Spec: &spec.IssuerSpec{LocalCA: &files}}})
	start := time.Now()
	s.now = func() time.Time { return start }
	if err := s.issue(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := s.getCertificate(nil)
	if first == temporary || first.Leaf == nil {
		t.Fatal("no issued certificate served")
	}
	life := first.Leaf.NotAfter.Sub(first.Leaf.NotBefore)
	renewAt := first.Leaf.NotBefore.Add(life * 2 / 3)
	s.now = func() time.Time { return renewAt.Add(-time.Minute) }
	if err := s.issue(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.getCertificate(nil); c != first {
		t.Fatal("renewed before two thirds of the life")
	}
	s.now = func() time.Time { return renewAt.Add(time.Second) }
	if err := s.issue(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.getCertificate(nil); c == first {
		t.Fatal("not renewed at two thirds of the life")
	}
}

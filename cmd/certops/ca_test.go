package main

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/pki"
)

// fileMode returns the permission bits of path.
func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestCAInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	code, stdout, stderr := cli(context.Background(), nil, "ca", "init", "--out", dir,
		"--common-name", "Test CA", "--permitted-dns", "example.com, example.net")
	if code != 0 {
		t.Fatalf("ca init: exit %d, stderr:\n%s", code, stderr)
	}
	certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	for _, tc := range []struct {
		path string
		want os.FileMode
	}{{dir, 0o700}, {certFile, 0o644}, {keyFile, 0o600}} {
		if got := fileMode(t, tc.path); got != tc.want {
			t.Errorf("mode of %s is %v, want %v", tc.path, got, tc.want)
		}
	}

	ca, err := pki.LoadCA(certFile, keyFile)
	if err != nil {
		t.Fatalf("LoadCA of the result: %v", err)
	}
	c := ca.Certificate()
	if got, want := c.Subject.CommonName, "Test CA"; got != want {
		t.Errorf("CommonName %q, want %q", got, want)
	}
	if diff := cmp.Diff(c.PermittedDNSDomains, []string{"example.com", "example.net"}); diff != "" {
		t.Errorf("PermittedDNSDomains (-got +want):\n%s", diff)
	}
	// The other kinds are closed in the certificate itself (pki tests verify with Go and OpenSSL).
	if len(c.ExcludedIPRanges) != 2 || !slices.Equal(c.PermittedEmailAddresses, []string{"none.invalid"}) || !slices.Equal(c.PermittedURIDomains, []string{"none.invalid"}) {
		t.Errorf("a --permitted-dns CA leaves IPs, emails or URIs open: excluded IPs %v, emails %v, URIs %v",
			c.ExcludedIPRanges, c.PermittedEmailAddresses, c.PermittedURIDomains)
	}
	if c.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm %v, want ECDSA by default", c.PublicKeyAlgorithm)
	}
	for _, want := range []string{certFile, keyFile, "kind: Issuer", "localCA: {certFile: " + certFile + ", keyFile: " + keyFile + "}"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout does not contain %q:\n%s", want, stdout)
		}
	}
}

func TestCAInitRSA(t *testing.T) {
	dir := t.TempDir() // exists already: its mode is left alone
	if code, _, stderr := cli(context.Background(), nil, "ca", "init", "--out", dir, "--key-type", "rsa", "--validity", "720h"); code != 0 {
		t.Fatalf("ca init: exit %d, stderr:\n%s", code, stderr)
	}
	ca, err := pki.LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatalf("LoadCA of the result: %v", err)
	}
	if got, want := ca.Certificate().PublicKeyAlgorithm, x509.RSA; got != want {
		t.Errorf("key algorithm %v, want %v", got, want)
	}
}

func TestCAInitRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if code, _, stderr := cli(ctx, nil, "ca", "init", "--out", dir); code != 0 {
		t.Fatalf("first ca init: exit %d, stderr:\n%s", code, stderr)
	}
	keyFile := filepath.Join(dir, "ca.key")
	before, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}

	code, _, stderr := cli(ctx, nil, "ca", "init", "--out", dir)
	if code != 1 || !strings.Contains(stderr, "already exists; use --force") {
		t.Errorf("second ca init: exit %d, stderr %q; want exit 1 and a refusal", code, stderr)
	}
	if after, err := os.ReadFile(keyFile); err != nil || string(after) != string(before) {
		t.Errorf("the refused run changed %s (err %v)", keyFile, err)
	}

	// Only the certificate left: still refused, the CA stays intact.
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := cli(ctx, nil, "ca", "init", "--out", dir); code != 1 {
		t.Errorf("ca init over a lone ca.crt: exit %d, want 1", code)
	}
	if _, err := os.Stat(keyFile); err == nil {
		t.Errorf("the refused run wrote %s", keyFile)
	}

	if code, _, stderr := cli(ctx, nil, "ca", "init", "--out", dir, "--force"); code != 0 {
		t.Fatalf("ca init --force: exit %d, stderr:\n%s", code, stderr)
	}
	if _, err := pki.LoadCA(filepath.Join(dir, "ca.crt"), keyFile); err != nil {
		t.Errorf("LoadCA after --force: %v", err)
	}
	if got, want := fileMode(t, keyFile), os.FileMode(0o600); got != want {
		t.Errorf("mode of %s is %v, want %v", keyFile, got, want)
	}
}

func TestCAInitErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad key type", []string{"init", "--key-type", "dsa"}, `CA key type "dsa"`},
		{"no --out", []string{"init"}, "--out DIR is required"},
		{"bad validity", []string{"init", "--validity", "forever"}, "invalid value"},
		{"bad domain", []string{"init", "--permitted-dns", "*.example.com"}, "not a domain name"},
		{"no subcommand", nil, "usage: certops ca init"},
		{"unknown subcommand", []string{"rotate"}, `unknown subcommand "rotate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			args := append([]string{"ca"}, tc.args...)
			if len(tc.args) > 0 && tc.args[0] == "init" && tc.name != "no --out" {
				args = append(args, "--out", dir)
			}
			code, _, stderr := cli(context.Background(), nil, args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("certops %s: exit %d, stderr %q; want exit 2 (bad usage) and %q", strings.Join(args, " "), code, stderr, tc.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("a failed run created %s", dir)
			}
		})
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/certops/certops/atomicfile"
	"github.com/certops/certops/envflag"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
)

const caUsage = `usage: certops ca init --out DIR [--common-name NAME] [--key-type ecdsa|rsa] [--validity 87600h] [--permitted-dns DOMAIN,...] [--force]

Creates a local CA for a localCA Issuer: DIR/ca.crt and DIR/ca.key (mode 0600).
`

// caCmd: certops ca init — create a local CA. The only subcommand is init.
func caCmd(_ context.Context, env cliEnv, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(env.stderr, caUsage)
		return failure.ExitCode(errUsage)
	}
	switch args[0] {
	case "init":
		return caInitCmd(env, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(env.stdout, caUsage)
		return 0
	default:
		fmt.Fprintf(env.stderr, "certops ca: unknown subcommand %q\n\n%s", args[0], caUsage)
		return failure.ExitCode(errUsage)
	}
}

func caInitCmd(env cliEnv, args []string) int {
	f := newFlagSet(env, "ca init")
	f.Usage = func() { fmt.Fprint(env.stderr, caUsage); f.PrintDefaults() }
	var (
		out, commonName, keyType, permitted string
		validity                            time.Duration
		force                               bool
	)
	// Flags only: a one-off command should not pick up stray CERTOPS_* variables
	// (CERTOPS_FORCE would silently replace a CA).
	f.StringVar(&out, "out", "", "directory to write ca.crt and ca.key to (created with mode 0700)")
	f.StringVar(&commonName, "common-name", pki.DefaultCACommonName, "common name of the CA")
	f.StringVar(&keyType, "key-type", pki.KeyTypeECDSA, "CA key type: ecdsa (P-256) or rsa (3072 bits)")
	f.DurationVar(&validity, "validity", pki.DefaultCAValidity, "how long the CA certificate is valid")
	f.StringVar(&permitted, "permitted-dns", "", "comma-separated DNS domains the CA may issue for (critical name constraints)")
	f.BoolVar(&force, "force", false, "replace an existing ca.crt and ca.key")
	if err := f.parse(args); err != nil {
		return parseExit(err)
	}
	if f.NArg() > 0 || out == "" {
		return env.fail("certops ca init", failure.New(failure.Usage, "--out DIR is required and no arguments are accepted"))
	}
	opts := pki.CAOptions{
		CommonName:          commonName,
		KeyType:             keyType,
		Validity:            validity,
		PermittedDNSDomains: envflag.SplitList(permitted),
	}
	ca, err := initCA(out, opts, force)
	if err != nil {
		if failure.KindOf(err) == failure.Invalid {
			err = failure.Wrap(failure.Usage, err) // the options are the flags: a bad flag value
		}
		return env.fail("certops ca init", err)
	}
	printNextSteps(env, ca)
	return 0
}

// createdCA is what initCA wrote.
type createdCA struct {
	certFile, keyFile string // absolute
	ca                *pki.CA
}

// initCA creates a CA and writes it to dir/ca.crt (0644) and dir/ca.key
// (0600), creating dir with mode 0700 when it does not exist. Existing
// files are refused unless force is set; with force they are removed only
// once the new CA has been created. Each file is created exclusively and
// appears whole (atomicfile.Create), so the key is never written into a
// file someone else prepared and a crash leaves no partial file.
func initCA(dir string, opts pki.CAOptions, force bool) (*createdCA, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	c := &createdCA{certFile: filepath.Join(dir, "ca.crt"), keyFile: filepath.Join(dir, "ca.key")}
	var existing []string
	for _, p := range []string{c.keyFile, c.certFile} {
		switch _, err := os.Lstat(p); {
		case err == nil && !force:
			return nil, fmt.Errorf("%s already exists; use --force to replace the CA", p)
		case err == nil:
			existing = append(existing, p)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
	}
	certPEM, keyPEM, err := pki.NewCA(opts)
	if err != nil {
		return nil, err
	}
	if c.ca, err = pki.ParseCA(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("check the new CA: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, p := range existing { // --force, and the new CA is ready
		if err := os.Remove(p); err != nil {
			return nil, err
		}
	}
	if err := atomicfile.Create(c.keyFile, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", c.keyFile, err)
	}
	if err := atomicfile.Create(c.certFile, certPEM, 0o644); err != nil {
		os.Remove(c.keyFile)
		return nil, fmt.Errorf("write %s: %w", c.certFile, err)
	}
	return c, nil
}

func printNextSteps(env cliEnv, c *createdCA) {
	cert := c.ca.Certificate()
	fmt.Fprintf(env.stdout, `Created the local CA %q (valid until %s):
  certificate: %s
  private key: %s (mode 0600: keep it secret, back it up)

Next: add an Issuer pointing at the files to your config repository. The
paths are where the reconciler reads them: on Kubernetes, store the files as
a Secret (kubectl create secret tls certops-ca --cert=%s --key=%s)
and use its mounted tls.crt and tls.key paths instead.

apiVersion: certops/v1
kind: Issuer
metadata: {name: internal-ca}
spec:
  localCA: {certFile: %s, keyFile: %s}
`, cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.DateOnly),
		c.certFile, c.keyFile, c.certFile, c.keyFile, c.certFile, c.keyFile)
}

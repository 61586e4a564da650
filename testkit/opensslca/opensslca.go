// Package opensslca is, for tests only, a certificate authority run by the
// real openssl command line: a root CA made with `openssl req` and an
// `openssl ca` configuration (its [ca] section, database and serial file)
// in a test's temporary directory, and the shell scripts an external
// issuer runs to sign with it.
package opensslca

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// CA is an openssl CA in a directory of its own.
type CA struct {
	Dir      string // the CA's directory: config, key, database, issued certificates
	CertFile string // the CA certificate (PEM)
	Config   string // the openssl.cnf with the [ca] section
}

// config is the CA's openssl.cnf; DIR is replaced by its directory. The
// policy keeps the CSR's common name, copy_extensions its
// subjectAltName: the names stay the agent's.
const config = `[ ca ]
default_ca = CA_default

[ CA_default ]
dir             = DIR
database        = $dir/index.txt
new_certs_dir   = $dir/newcerts
certificate     = $dir/ca.crt
private_key     = $dir/ca.key
serial          = $dir/serial
default_md      = sha256
default_days    = 30
policy          = policy_any
copy_extensions = copy
unique_subject  = no
email_in_dn     = no
x509_extensions = leaf_ext

[ policy_any ]
commonName = optional

[ leaf_ext ]
basicConstraints     = critical,CA:FALSE
keyUsage             = critical,digitalSignature
extendedKeyUsage     = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ req ]
prompt             = no
distinguished_name = req_dn
x509_extensions    = ca_ext

[ req_dn ]
CN = CN_HERE

[ ca_ext ]
basicConstraints     = critical,CA:TRUE
keyUsage             = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`

// New makes a root CA named cn with openssl in a new temporary directory.
func New(t testing.TB, cn string) *CA {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("these tests run the real openssl: %v", err)
	}
	dir := t.TempDir()
	ca := &CA{Dir: dir, CertFile: filepath.Join(dir, "ca.crt"), Config: filepath.Join(dir, "openssl.cnf")}
	cnf := strings.NewReplacer("DIR", dir, "CN_HERE", cn).Replace(config)
	write(t, ca.Config, cnf, 0o600)
	write(t, filepath.Join(dir, "index.txt"), "", 0o600)
	write(t, filepath.Join(dir, "serial"), "1000\n", 0o600)
	if err := os.Mkdir(filepath.Join(dir, "newcerts"), 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "openssl", "req", "-config", ca.Config, "-x509", "-newkey", "ec",
		"-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", filepath.Join(dir, "ca.key"),
		"-out", ca.CertFile, "-days", "365")
	return ca
}

// SignScript writes a script that signs the CSR on its standard input with
// `openssl ca -batch` and prints the certificate, then the CA certificate,
// as an external issuer's command does; it returns the script's path.
func (ca *CA) SignScript(t testing.TB) string {
	t.Helper()
	return Script(t, `cat > request.csr
openssl ca -batch -config '`+ca.Config+`' -in request.csr -out issued.crt -notext 2>openssl.err || {
	cat openssl.err >&2
	exit 1
}
cat issued.crt '`+ca.CertFile+`'
`)
}

// Script writes an executable /bin/sh script with body (after `set -eu`)
// into a new temporary directory and returns its path.
func Script(t testing.TB, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sign.sh")
	write(t, path, "#!/bin/sh\nset -eu\n"+body, 0o700)
	return path
}

func write(t testing.TB, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func run(t testing.TB, dir string, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

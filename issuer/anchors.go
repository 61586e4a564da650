package issuer

import (
	"crypto/x509"
	"os"
	"sync"
	"time"

	"github.com/certops/certops/pki"
)

// caBundleFile is the caBundleFile of an external or a vault issuer: the
// CA certificates the issuer's certificates chain to, which a TrustBundle
// naming the issuer deploys. Like a local CA's files, the file is re-read
// when its modification time or size changes, looked at at most every
// ReloadCheckInterval; a file that cannot be read or holds no CA
// certificate keeps the certificates read before.
type caBundleFile struct {
	path string

	mu      sync.Mutex
	certs   []*x509.Certificate // the CA certificates last read
	stamp   fileStamp           // of the file as last read
	checked time.Time           // when the stamp was last compared; zero: never
}

func newCABundleFile(path string) *caBundleFile { return &caBundleFile{path: path} }

// certificates returns the file's CA certificates as of now (nil when it
// never held any).
func (b *caBundleFile) certificates(now time.Time) []*x509.Certificate {
	b.mu.Lock()
	defer b.mu.Unlock()
	if elapsed := now.Sub(b.checked); !b.checked.IsZero() && elapsed >= 0 && elapsed < ReloadCheckInterval {
		return b.certs
	}
	b.checked = now
	st := stampFile(b.path)
	if st == b.stamp && b.certs != nil {
		return b.certs
	}
	b.stamp = st
	data, err := os.ReadFile(b.path)
	if err != nil {
		return b.certs
	}
	certs, err := pki.ParseCertificatesPEM(data)
	if err != nil {
		return b.certs
	}
	var cas []*x509.Certificate
	for _, c := range certs {
		if c.IsCA {
			cas = append(cas, c)
		}
	}
	if len(cas) > 0 {
		b.certs = cas
	}
	return b.certs
}

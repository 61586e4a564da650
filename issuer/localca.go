package issuer

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/spec"
)

// ReloadCheckInterval is how often at most a localCA issuer looks at its
// files' modification times to pick up a rotated CA.
const ReloadCheckInterval = 30 * time.Second

// localCA signs with a CA read from the operator's files.
type localCA struct {
	name   string
	files  spec.LocalCAIssuer
	logger *slog.Logger

	mu      sync.Mutex
	ca      *pki.CA    // the CA to sign with; nil until the files loaded once
	err     error      // the last load error; nil when ca is from the current files
	stamps  fileStamps // of the files as last loaded (successfully or not)
	checked time.Time  // when stamps were last compared with the files
}

func newLocalCA(name string, files spec.LocalCAIssuer, logger *slog.Logger, now time.Time) *localCA {
	l := &localCA{name: name, files: files, logger: logger, checked: now}
	l.load(stampFiles(files))
	return l
}

func (l *localCA) Type() string { return TypeLocalCA }

// Sign signs the CSR, which the caller has checked against the certificate
// spec (see Signer).
func (l *localCA) Sign(ctx context.Context, cert *spec.CertificateSpec, csr *x509.CertificateRequest, now time.Time) (*agentproto.Issued, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ca, err := l.current(now)
	if err != nil {
		return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q: %w", l.name, err))
	}
	issued, err := ca.SignPublished(csr, cert, now, pki.PublishedAt(l.files.PublicURL, l.name))
	if err != nil {
		return nil, fmt.Errorf("issuer %q: %w", l.name, err)
	}
	return issued, nil
}

func (l *localCA) usable(now time.Time) error {
	ca, err := l.current(now)
	if err != nil {
		return err
	}
	if end := ca.Certificate().NotAfter; now.After(end) {
		return fmt.Errorf("CA certificate %s expired at %s", l.files.CertFile, end.UTC().Format(time.RFC3339))
	}
	return nil
}

func (l *localCA) status(now time.Time) string {
	if err := l.usable(now); err != nil {
		return err.Error()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return fmt.Sprintf("still signing with the CA loaded before: reloading failed: %v", l.err)
	}
	return ""
}

// current returns the CA to sign with at now. At most every
// ReloadCheckInterval it compares the files' stamps with those last loaded
// and re-reads them when they differ. A failed reload keeps the CA loaded
// before (a half-rotated Secret must not stop issuance); until a CA has
// loaded once, the load error is returned.
func (l *localCA) current(now time.Time) (*pki.CA, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if elapsed := now.Sub(l.checked); elapsed >= ReloadCheckInterval || elapsed < 0 {
		l.checked = now
		if st := stampFiles(l.files); st != l.stamps {
			l.load(st)
		}
	}
	if l.ca == nil {
		return nil, l.err
	}
	return l.ca, nil
}

// load reads the CA files whose stamps are st; l.mu is held or l is new.
func (l *localCA) load(st fileStamps) {
	l.stamps = st
	ca, err := pki.LoadCA(l.files.CertFile, l.files.KeyFile)
	switch {
	case err == nil:
		l.ca, l.err = ca, nil
		c := ca.Certificate()
		l.logger.Info("CA loaded", "cert_file", l.files.CertFile, "subject", c.Subject.String(),
			"not_after", c.NotAfter, "serial", c.SerialNumber.Text(16))
	case l.ca != nil:
		l.err = err
		l.logger.Error("reloading the CA failed; still signing with the CA loaded before", "err", err)
	default:
		l.err = err
		l.logger.Error("loading the CA failed; the issuer is unavailable", "err", err)
	}
}

// fileStamps identify a version of the CA files: a changed stamp means the
// files were replaced or rewritten.
type fileStamps struct {
	cert, key fileStamp
}

type fileStamp struct {
	modTime int64 // UnixNano; 0 when the file cannot be stat'ed
	size    int64
}

func stampFiles(files spec.LocalCAIssuer) fileStamps {
	return fileStamps{cert: stampFile(files.CertFile), key: stampFile(files.KeyFile)}
}

func stampFile(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{modTime: fi.ModTime().UnixNano(), size: fi.Size()}
}

// CA returns the CA of the named localCA issuer as loaded at now: a
// failure.NotFound error when there is no such issuer or it is not a
// local CA, failure.Unavailable when its files never loaded.
func (r *Registry) CA(name string) (*pki.CA, error) {
	e, ok := (*r.issuers.Load())[name]
	if !ok {
		return nil, failure.Wrap(failure.NotFound, fmt.Errorf("issuer %q is not defined", name))
	}
	l, ok := e.issuer.(*localCA)
	if !ok {
		return nil, failure.Wrap(failure.NotFound, fmt.Errorf("issuer %q is not a local CA", name))
	}
	ca, err := l.current(r.now())
	if err != nil {
		return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q: %w", name, err))
	}
	return ca, nil
}

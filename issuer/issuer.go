// Package issuer turns the Issuer objects of the desired state into signers
// the reconciler issues certificates with. A Registry holds one signer per
// Issuer, reloads it when its spec changes and keeps a per-issuer load
// error, so one broken issuer never stops the others.
//
// A localCA issuer signs with the operator's CA files (see pki); it never
// generates a CA. It re-reads the files when the Issuer spec changes and
// when their modification time or size changes, checked at most every
// ReloadCheckInterval (a rotated Kubernetes Secret, for instance).
//
// An acme issuer orders certificates from an ACME server with lego (see
// acme.go and docs/acme.md): the agent's CSR finalizes the order, so keys
// stay on the agents. It implements Orderer besides Signer: http-01
// challenges are answered by the agents deploying the certificate through
// an HTTP01Publisher the caller passes with each Order; dns-persist-01
// records are the operator's, checked before each order (acme_persist.go).
//
// An external issuer runs an operator's command that turns the CSR into a
// certificate chain (see external.go) and checks what it returns: the
// CSR's key, the spec's names, valid now, chaining to its CA bundle.
package issuer

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/spec"
)

// Issuer types, as Signer.Type reports them.
const (
	TypeLocalCA = "localCA"
	TypeACME    = "acme"
)

// Signer issues certificates for one Issuer.
type Signer interface {
	// Sign issues a certificate for csr as the certificate spec cert
	// describes. The caller has checked csr against cert with pki.CheckCSR
	// (the agent API does, before it picks Sign or Order), so a CSR that
	// does not match is refused once, synchronously, whatever the issuer.
	Sign(ctx context.Context, cert *spec.CertificateSpec, csr *x509.CertificateRequest, now time.Time) (*agentproto.Issued, error)
	// Type is the issuer type: TypeLocalCA, TypeACME or TypeExternal.
	Type() string
}

// issuer is what the Registry holds: a Signer that can also say whether it
// is usable right now and how it is doing.
type issuer interface {
	Signer
	// usable returns why Sign cannot succeed at now, or nil.
	usable(now time.Time) error
	// status is "" when the issuer is healthy, else what is wrong.
	status(now time.Time) string
}

// Registry holds the signers of the current desired state. It is safe for
// concurrent use; lookups take no lock.
type Registry struct {
	logger *slog.Logger
	now    func() time.Time // the clock of Signer and Status; tests replace it

	acme ACMEOptions // how acme issuers are built

	syncMu  sync.Mutex // serializes Sync
	issuers atomic.Pointer[map[string]*entry]
}

// Option configures a Registry.
type Option func(*Registry)

// WithACME sets what acme issuers are built with: metrics, timeouts.
func WithACME(o ACMEOptions) Option {
	return func(r *Registry) { r.acme = o }
}

// entry is one Issuer object's signer and the spec hash it was built from.
type entry struct {
	hash   string
	issuer issuer
}

// NewRegistry returns an empty registry; a nil logger discards logs.
func NewRegistry(logger *slog.Logger, opts ...Option) *Registry {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{logger: logger, now: time.Now}
	for _, o := range opts {
		o(r)
	}
	r.acme = r.acme.withDefaults()
	r.issuers.Store(&map[string]*entry{})
	return r
}

// Sync makes the registry hold exactly the given Issuer objects. An issuer
// whose object is unchanged (same Object.Hash) keeps its signer; a new or
// changed one is (re)loaded, and a load failure is kept as that issuer's
// error; issuers no longer present are dropped.
func (r *Registry) Sync(issuers []*spec.Object) {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	old := *r.issuers.Load()
	next := make(map[string]*entry, len(issuers))
	for _, o := range issuers {
		hash := o.Hash()
		if e, ok := old[o.Name]; ok && e.hash == hash {
			next[o.Name] = e
			continue
		}
		next[o.Name] = &entry{hash: hash, issuer: r.load(o)}
	}
	for name := range old {
		if _, ok := next[name]; !ok {
			r.logger.Info("issuer removed", "issuer", name)
		}
	}
	r.issuers.Store(&next)
}

// load builds the signer of one Issuer object.
func (r *Registry) load(o *spec.Object) issuer {
	logger := r.logger.With("issuer", o.Name)
	s := o.Issuer()
	switch {
	case s == nil:
		return broken{err: fmt.Errorf("object %s is not an Issuer", o.Key())}
	case s.LocalCA != nil:
		return newLocalCA(o.Name, *s.LocalCA, logger, r.now())
	case s.ACME != nil:
		a, err := newACME(o.Name, *s.ACME, r.acme, logger)
		if err != nil {
			logger.Error("acme issuer is misconfigured", "err", err)
			return broken{typ: TypeACME, err: err}
		}
		return a
	case s.External != nil:
		return newExternal(o.Name, *s.External, logger)
	case s.Vault != nil:
		v, err := newVault(o.Name, *s.Vault, logger, func() time.Time { return r.now() })
		if err != nil {
			logger.Error("vault issuer is misconfigured", "err", err)
			return broken{typ: TypeVault, err: err}
		}
		return v
	default:
		return broken{err: errors.New("issuer has none of localCA, acme, external, vault")}
	}
}

// Signer returns the signer of the named issuer: a failure.NotFound error
// when there is no such issuer, failure.Unavailable when it cannot sign now
// (its files failed to load, its configuration is unusable).
func (r *Registry) Signer(name string) (Signer, error) {
	e, ok := (*r.issuers.Load())[name]
	if !ok {
		return nil, failure.Wrap(failure.NotFound, fmt.Errorf("issuer %q is not defined", name))
	}
	if err := e.issuer.usable(r.now()); err != nil {
		return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q is unavailable: %w", name, err))
	}
	return e.issuer, nil
}

// CheckNames tells whether the named issuer may sign c's names: an error
// naming each name a local CA's name constraints do not permit, nil when it
// may or when that cannot be told here (an unknown or unloaded issuer, ACME:
// those fail at issue time with their own reasons).
func (r *Registry) CheckNames(name string, c *spec.CertificateSpec) error {
	ca := r.loadedCA(name)
	if ca == nil {
		return nil // not a local CA, or it has not loaded: its own status says why
	}
	if err := ca.CheckNames(c); err != nil {
		return fmt.Errorf("issuer %q cannot sign this certificate: %w", name, err)
	}
	return nil
}

// loadedCA is the CA the local-CA issuer name signs with now, or nil when
// name is no local CA or its CA has not loaded.
func (r *Registry) loadedCA(name string) *pki.CA {
	e, ok := (*r.issuers.Load())[name]
	if !ok {
		return nil
	}
	l, ok := e.issuer.(*localCA)
	if !ok {
		return nil
	}
	ca, err := l.current(r.now())
	if err != nil {
		return nil
	}
	return ca
}

// CAExpirations maps each localCA issuer whose CA has loaded to when its
// CA certificate ends (for CertopsIssuerExpiringSoon); other issuers are
// absent.
func (r *Registry) CAExpirations() map[string]time.Time {
	now := r.now()
	out := make(map[string]time.Time)
	for name, e := range *r.issuers.Load() {
		l, ok := e.issuer.(*localCA)
		if !ok {
			continue
		}
		if ca, err := l.current(now); err == nil {
			out[name] = ca.Certificate().NotAfter
		}
	}
	return out
}

// CACertificates are the CA certificates a TrustBundle source naming the
// issuer deploys: a local CA's certificate as it signs now; an external or
// a vault issuer's caBundleFile (its CA certificates, re-read when the
// file changes); nil for an unknown issuer, a local CA that has not
// loaded, and an acme issuer (whose root the agent API takes from the
// chains the CA sent).
func (r *Registry) CACertificates(name string) []*x509.Certificate {
	if ca := r.loadedCA(name); ca != nil {
		return []*x509.Certificate{ca.Certificate()}
	}
	e, ok := (*r.issuers.Load())[name]
	if !ok {
		return nil
	}
	if a, ok := e.issuer.(anchored); ok {
		return a.caCertificates(r.now())
	}
	return nil
}

// anchored is an issuer whose spec names the CA certificates its
// certificates chain to (caBundleFile).
type anchored interface {
	caCertificates(now time.Time) []*x509.Certificate
}

// Status maps every issuer to "" when it is healthy, else to what is wrong.
func (r *Registry) Status() map[string]string {
	now := r.now()
	out := make(map[string]string)
	for name, e := range *r.issuers.Load() {
		out[name] = e.issuer.status(now)
	}
	return out
}

// broken is an issuer that cannot sign at all.
type broken struct {
	typ string
	err error
}

func (b broken) Type() string            { return b.typ }
func (b broken) usable(time.Time) error  { return b.err }
func (b broken) status(time.Time) string { return b.err.Error() }
func (b broken) Sign(context.Context, *spec.CertificateSpec, *x509.CertificateRequest, time.Time) (*agentproto.Issued, error) {
	return nil, failure.Wrap(failure.Unavailable, b.err)
}

package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
)

// tlsFiles is serve's TLS configuration: a certificate (with its chain)
// and key file, re-read when they change, and optionally a CA bundle that
// agents' client certificates must chain to.
type tlsFiles struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string
	// SelfIssuer names a localCA Issuer that issues serve's own serving
	// certificate for DNSNames, instead of the files.
	SelfIssuer string
	DNSNames   []string
}

// declareTLS declares the TLS flags of t on f.
func declareTLS(f *flagSet, t *tlsFiles) {
	f.StringEnv(&t.CertFile, "tls-cert-file", "", "PEM certificate (followed by its chain) to serve HTTPS with; re-read when it changes")
	f.StringEnv(&t.KeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file; re-read when it changes")
	f.StringEnv(&t.SelfIssuer, "tls-self-issuer", "", "serve HTTPS with a certificate this localCA Issuer of the config issues for --tls-dns-names (key kept in memory, renewed at 2/3 of its life); instead of --tls-cert-file")
	f.StringsEnv(&t.DNSNames, "tls-dns-names", "with --tls-self-issuer: the names (DNS names or IP addresses) of the serving certificate")
	f.StringEnv(&t.ClientCAFile, "tls-client-ca-file", "", "PEM CA bundle: the agent routes (/agent/v1/) then require a client certificate that chains to it")
}

// check rejects combinations that make no sense.
func (t tlsFiles) check() error {
	files := t.CertFile != "" || t.KeyFile != ""
	switch {
	case files && t.SelfIssuer != "":
		return failure.New(failure.Usage, "--tls-self-issuer and --tls-cert-file/--tls-key-file exclude each other")
	case t.SelfIssuer != "" && len(t.DNSNames) == 0:
		return failure.New(failure.Usage, "--tls-self-issuer needs --tls-dns-names")
	case t.SelfIssuer == "" && len(t.DNSNames) > 0:
		return failure.New(failure.Usage, "--tls-dns-names is only for --tls-self-issuer")
	case files && (t.CertFile == "" || t.KeyFile == ""):
		return failure.New(failure.Usage, "--tls-cert-file and --tls-key-file go together")
	case !files && t.SelfIssuer == "" && t.ClientCAFile != "":
		return failure.New(failure.Usage, "--tls-client-ca-file needs --tls-cert-file and --tls-key-file, or --tls-self-issuer")
	}
	return nil
}

// certReloadInterval is how often, at most, the handshake checks whether
// the certificate or key file changed.
const certReloadInterval = 2 * time.Second

// serverTLSConfig is the tls.Config of t: TLS 1.2 at least, the key pair
// from the files (re-read when they change), client certificates verified
// against ClientCAFile when it is set. A missing or broken pair at start is
// a usage error.
func (t tlsFiles) serverTLSConfig(logger *slog.Logger) (*tls.Config, error) {
	r := &certReloader{certFile: t.CertFile, keyFile: t.KeyFile, every: certReloadInterval, logger: logger, now: time.Now}
	if err := r.load(); err != nil {
		return nil, failure.Wrap(failure.Usage, err)
	}
	return t.tlsConfig(r.getCertificate)
}

// tlsConfig is the tls.Config serving getCertificate's certificates, with
// the client CA of t.
func (t tlsFiles) tlsConfig(getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCertificate}
	if t.ClientCAFile != "" {
		pool, err := pki.LoadCertPool(t.ClientCAFile)
		if err != nil {
			return nil, failure.Wrap(failure.Usage, fmt.Errorf("--tls-client-ca-file: %w", err))
		}
		cfg.ClientCAs = pool
		// Verified when given; requireClientCert insists on the agent
		// routes only, so probes and the status API need none.
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// certReloader serves a key pair from two files and re-reads them when
// their size or modification time changes, checked at most every `every`.
// A pair that does not load keeps the previous one in service (logged once
// per change), so a half-written rotation never breaks the listener.
type certReloader struct {
	certFile, keyFile string
	every             time.Duration
	logger            *slog.Logger
	now               func() time.Time

	mu        sync.Mutex
	cert      *tls.Certificate
	seen      [2]fileStamp // of the files as last read, loaded or not
	checkedAt time.Time
}

type fileStamp struct {
	size    int64
	modTime time.Time
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: fi.Size(), modTime: fi.ModTime()}, nil
}

// load reads the pair (under r.mu or before r is shared).
func (r *certReloader) load() error {
	var stamps [2]fileStamp
	for i, p := range []string{r.certFile, r.keyFile} {
		s, err := stampOf(p)
		if err != nil {
			return fmt.Errorf("TLS key pair: %w", err)
		}
		stamps[i] = s
	}
	r.seen = stamps
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("TLS key pair %s, %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert = &cert
	return nil
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checkedAt) >= r.every {
		r.checkedAt = now
		r.reloadIfChanged()
	}
	return r.cert, nil
}

// reloadIfChanged re-reads the pair when either file's stamp changed.
func (r *certReloader) reloadIfChanged() {
	var stamps [2]fileStamp
	for i, p := range []string{r.certFile, r.keyFile} {
		s, err := stampOf(p)
		if err != nil {
			if r.seen[i] != (fileStamp{}) {
				r.logger.Warn("TLS key pair unreadable: serving the previous certificate", "err", err)
				r.seen[i] = fileStamp{}
			}
			return
		}
		stamps[i] = s
	}
	if stamps == r.seen {
		return
	}
	if err := r.load(); err != nil { // r.cert stays
		r.logger.Warn("new TLS key pair does not load: serving the previous certificate", "err", err)
		return
	}
	r.logger.Info("TLS key pair reloaded", "cert", r.certFile)
}

// requireClientCert answers 401 on requests that came without a verified
// client certificate, and passes the others to h.
func requireClientCert(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			failure.WriteHTTP(w, failure.New(failure.Unauthorized, "a client certificate signed by the configured client CA is required"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

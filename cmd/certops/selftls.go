package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/issuer"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/spec"
)

// selfIssued is serve's own serving certificate, issued by a localCA
// Issuer of the applied config (--tls-self-issuer) for --tls-dns-names.
// Its key is generated in memory and never written. Until the issuer has
// signed one (the config is not applied yet, the issuer's files do not
// load), it serves a temporary self-signed certificate for the same names.
// It renews at two thirds of the certificate's life; a failed issuance is
// retried, the current certificate stays in service meanwhile.
type selfIssued struct {
	issuer   string
	spec     *spec.CertificateSpec // what is asked of the issuer: the names, a server certificate
	registry *issuer.Registry
	logger   *slog.Logger
	now      func() time.Time
	retry    time.Duration

	mu     sync.Mutex
	cert   *tls.Certificate
	issued bool      // cert is the issuer's, not the temporary one
	renew  time.Time // when to renew cert
}

func newSelfIssued(issuerName string, names []string, registry *issuer.Registry, logger *slog.Logger) (*selfIssued, error) {
	c := &spec.CertificateSpec{IssuerRef: issuerName, CommonName: names[0], Usages: []string{"digital signature", "server auth"}}
	for _, n := range names {
		if net.ParseIP(n) != nil {
			c.IPAddresses = append(c.IPAddresses, n)
		} else {
			c.DNSNames = append(c.DNSNames, n)
		}
	}
	s := &selfIssued{issuer: issuerName, spec: c, registry: registry, logger: logger.With("tls_self_issuer", issuerName),
		now: time.Now, retry: 2 * time.Second}
	key, err := pki.GenerateKey(serveKey)
	if err != nil {
		return nil, err
	}
	now := s.now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: c.CommonName},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour), DNSNames: c.DNSNames,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, ip := range c.IPAddresses {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("temporary serving certificate: %w", err)
	}
	s.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return s, nil
}

// serveKey is the serving certificate's key, made in memory.
var serveKey = agentproto.KeySpec{Algorithm: "ECDSA", Size: 256}

func (s *selfIssued) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert, nil
}

// Run issues and renews until ctx ends.
func (s *selfIssued) Run(ctx context.Context) {
	for {
		wait := s.retry
		if err := s.issue(ctx); err != nil {
			s.logger.Warn("issue the serving certificate", "err", err)
			if s.retry < time.Minute {
				s.retry *= 2
			}
		} else {
			s.retry = 2 * time.Second
			s.mu.Lock()
			wait = s.renew.Sub(s.now())
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, time.Second)):
		}
	}
}

// issue signs a new certificate when there is none from the issuer yet or
// its renewal time has come.
func (s *selfIssued) issue(ctx context.Context) error {
	now := s.now()
	s.mu.Lock()
	due := !s.issued || !now.Before(s.renew)
	s.mu.Unlock()
	if !due {
		return nil
	}
	signer, err := s.registry.Signer(s.issuer)
	if err != nil {
		return err
	}
	if signer.Type() != issuer.TypeLocalCA {
		return fmt.Errorf("issuer %q is of type %s; --tls-self-issuer needs a localCA issuer", s.issuer, signer.Type())
	}
	key, err := pki.GenerateKey(serveKey)
	if err != nil {
		return err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return err
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return err
	}
	issued, err := signer.Sign(ctx, s.spec, csr, now)
	if err != nil {
		return err
	}
	keyPEM, err := pki.MarshalKeyPEM(key)
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair([]byte(issued.CertPEM+issued.ChainPEM), keyPEM)
	if err != nil {
		return fmt.Errorf("issued serving certificate: %w", err)
	}
	renew := s.spec.RenewalTime(issued.NotBefore, issued.NotAfter) // the default: two thirds of its life
	s.mu.Lock()
	s.cert, s.issued, s.renew = &pair, true, renew
	s.mu.Unlock()
	s.logger.Info("serving certificate issued", "serial", issued.Serial, "not_after", issued.NotAfter, "renew_at", renew)
	return nil
}

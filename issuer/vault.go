package issuer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/redact"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/textlimit"
)

// TypeVault is the type of a vault issuer, as Signer.Type reports it.
const TypeVault = "vault"

// neverExpires stands for the lease of a token without one.
const neverExpires = 100 * 365 * 24 * time.Hour

// VaultRequestTimeout bounds one request to Vault (a login, a renewal, a
// signing).
const VaultRequestTimeout = 30 * time.Second

// vaultIssuer signs CSRs with a Vault PKI secrets engine
// (POST /v1/{mount}/sign/{role}). With spec.vault.auth.tokenFile the token
// is read from the file at each signing, so whoever rotates it (Vault
// Agent, an operator) needs no restart of certops. With appRole the issuer
// logs in, keeps the token, renews it (auth/token/renew-self) once half of
// its lease has passed and logs in again when renewal fails, the token is
// not renewable or it has expired.
type vaultIssuer struct {
	name   string
	cfg    spec.VaultIssuer
	logger *slog.Logger
	now    func() time.Time
	client *vault.Client // without a token; each request clones it and sets one
	roots  *x509.CertPool
	// anchors is spec.vault.caBundleFile again, as trust bundles read it
	// (re-read when it changes; roots is what signing checks against).
	anchors *caBundleFile

	mu        sync.Mutex // guards the AppRole token; held while logging in or renewing
	token     string
	renewAt   time.Time // when to renew the token (half its lease)
	expiresAt time.Time // when the token's lease ends
	renewable bool

	statusMu   sync.Mutex // guards lastErrMsg
	lastErrMsg string     // the last signing's failure, for status; "" after a success
}

func newVault(name string, cfg spec.VaultIssuer, logger *slog.Logger, now func() time.Time) (*vaultIssuer, error) {
	roots, err := pki.LoadCertPool(cfg.CABundleFile)
	if err != nil {
		return nil, err
	}
	conf := &vault.Config{
		Address:    cfg.Address,
		MaxRetries: 0, // the reconciler retries failed issuances itself
		Timeout:    VaultRequestTimeout,
		HttpClient: &http.Client{
			Timeout: VaultRequestTimeout,
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
				TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
				TLSHandshakeTimeout: 10 * time.Second,
				MaxIdleConnsPerHost: 4,
			},
		},
	}
	client, err := vault.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("vault client for %s: %w", redact.URL(cfg.Address), err)
	}
	client.ClearToken() // never VAULT_TOKEN from certops' environment
	logger.Info("vault issuer configured", "address", redact.URL(cfg.Address), "mount", cfg.Mount, "role", cfg.Role)
	return &vaultIssuer{name: name, cfg: cfg, logger: logger, now: now, client: client, roots: roots,
		anchors: newCABundleFile(cfg.CABundleFile)}, nil
}

// caCertificates are the CA certificates of spec.vault.caBundleFile.
func (v *vaultIssuer) caCertificates(now time.Time) []*x509.Certificate {
	return v.anchors.certificates(now)
}

func (v *vaultIssuer) Type() string { return TypeVault }

// usable is always nil: whether Vault answers is known only by asking, and
// a failed signing says why.
func (v *vaultIssuer) usable(time.Time) error { return nil }

func (v *vaultIssuer) status(time.Time) string {
	v.statusMu.Lock()
	defer v.statusMu.Unlock()
	return v.lastErrMsg
}

// Sign asks Vault to sign the CSR (which the caller has checked against
// cert, see Signer) and checks what comes back: a certificate that parses,
// for the CSR's key, with exactly the spec's names, chaining to
// spec.vault.caBundleFile.
func (v *vaultIssuer) Sign(ctx context.Context, cert *spec.CertificateSpec, csr *x509.CertificateRequest, now time.Time) (*agentproto.Issued, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	issued, err := v.sign(ctx, cert, csr, now)
	v.statusMu.Lock()
	if err != nil {
		v.lastErrMsg = textlimit.Message(err.Error())
	} else {
		v.lastErrMsg = ""
	}
	v.statusMu.Unlock()
	if err != nil {
		v.logger.Warn("vault signing failed", "err", err)
		return nil, err
	}
	return issued, nil
}

func (v *vaultIssuer) sign(ctx context.Context, cert *spec.CertificateSpec, csr *x509.CertificateRequest, now time.Time) (*agentproto.Issued, error) {
	path := v.cfg.Mount + "/sign/" + v.cfg.Role
	body := signRequest(cert, csr)
	secret, err := v.write(ctx, path, body)
	if err != nil {
		return nil, err
	}
	issued, err := v.checkIssued(secret, cert, csr, now)
	if err != nil {
		return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q: Vault's certificate refused: %w", v.name, err))
	}
	return issued, nil
}

// signRequest is the body of pki/sign/:role: the CSR asks for the spec's
// names (pki.CheckCSR made sure), and they are repeated so a role with
// use_csr_sans=false issues them too; exclude_cn_from_sans keeps Vault
// from adding the common name as a DNS name the spec does not list.
func signRequest(cert *spec.CertificateSpec, csr *x509.CertificateRequest) map[string]any {
	body := map[string]any{
		"csr":                  string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw})),
		"format":               "pem",
		"exclude_cn_from_sans": true,
		"ttl":                  strconv.FormatInt(int64(cert.DurationValue()/time.Second), 10) + "s",
	}
	if cert.CommonName != "" {
		body["common_name"] = cert.CommonName
	}
	if alt := slices.Concat(cert.DNSNames, cert.EmailAddresses); len(alt) > 0 {
		body["alt_names"] = strings.Join(alt, ",")
	}
	if len(cert.IPAddresses) > 0 {
		body["ip_sans"] = strings.Join(cert.IPAddresses, ",")
	}
	if len(cert.URIs) > 0 {
		body["uri_sans"] = strings.Join(cert.URIs, ",")
	}
	return body
}

// write POSTs body to Vault's path with the issuer's token. With AppRole, a
// 403 (the token was revoked, or expired early) drops the token and the
// request is retried once with a fresh login.
func (v *vaultIssuer) write(ctx context.Context, path string, body map[string]any) (*vault.Secret, error) {
	for attempt := 0; ; attempt++ {
		token, err := v.currentToken(ctx)
		if err != nil {
			return nil, err
		}
		c, err := v.client.Clone()
		if err != nil {
			return nil, failure.Wrap(failure.Internal, err)
		}
		c.SetToken(token)
		secret, err := c.Logical().WriteWithContext(ctx, path, body)
		if err == nil {
			if secret == nil || secret.Data == nil {
				return nil, failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q: Vault answered %s with no data", v.name, path))
			}
			return secret, nil
		}
		var re *vault.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusForbidden && v.cfg.Auth.AppRole != nil && attempt == 0 {
			v.logger.Info("vault refused the AppRole token; logging in again", "path", path)
			v.dropToken(token)
			continue
		}
		return nil, v.vaultError(path, err)
	}
}

// vaultError turns a failed Vault request into a failure error carrying
// Vault's own messages, bounded and with secrets redacted. None is
// Rejected: the agent API answers that as a CSR problem, and the CSR was
// checked; Vault refusing is the issuer failing (recorded on the
// deployment and in the issuer's status, not sent to the agent).
func (v *vaultIssuer) vaultError(path string, err error) error {
	var re *vault.ResponseError
	if !errors.As(err, &re) {
		msg := textlimit.Message(redact.Text(err.Error()))
		return failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q: Vault at %s: %s", v.name, redact.URL(v.cfg.Address), msg))
	}
	msg := "no error message"
	if len(re.Errors) > 0 {
		msg = strings.Join(re.Errors, "; ")
	}
	msg = textlimit.Message(redact.Text(msg))
	kind := failure.Unavailable // to the agent: issuer_unavailable, with backoff
	if re.StatusCode == http.StatusForbidden {
		kind = failure.Forbidden
	}
	return failure.Wrap(kind, fmt.Errorf("issuer %q: Vault answered %d to %s: %s", v.name, re.StatusCode, path, msg))
}

// currentToken returns the token to send: the token file's content, or the
// AppRole token, renewed or obtained anew as its lease requires.
func (v *vaultIssuer) currentToken(ctx context.Context) (string, error) {
	if f := v.cfg.Auth.TokenFile; f != "" {
		return readSecretFile(v.name, "spec.vault.auth.tokenFile", f)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if v.token != "" && now.Before(v.renewAt) {
		return v.token, nil
	}
	if v.token != "" && v.renewable && now.Before(v.expiresAt) {
		err := v.renewLocked(ctx, now)
		if err == nil {
			return v.token, nil
		}
		v.logger.Warn("renewing the vault token failed; logging in again", "err", err)
	}
	if err := v.loginLocked(ctx, now); err != nil {
		return "", err
	}
	return v.token, nil
}

// loginLocked logs in with AppRole; v.mu is held.
func (v *vaultIssuer) loginLocked(ctx context.Context, now time.Time) error {
	r := v.cfg.Auth.AppRole
	secretID, err := readSecretFile(v.name, "spec.vault.auth.appRole.secretIDFile", r.SecretIDFile)
	if err != nil {
		return err
	}
	c, err := v.client.Clone()
	if err != nil {
		return failure.Wrap(failure.Internal, err)
	}
	c.ClearToken()
	secret, err := c.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": r.RoleID, "secret_id": secretID})
	if err != nil {
		return v.vaultError("auth/approle/login", err)
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q: Vault's AppRole login returned no token", v.name))
	}
	v.keepLocked(secret.Auth, now)
	v.logger.Info("logged in to vault with AppRole", "lease", time.Duration(secret.Auth.LeaseDuration)*time.Second, "renewable", secret.Auth.Renewable)
	return nil
}

// renewLocked renews the AppRole token; v.mu is held.
func (v *vaultIssuer) renewLocked(ctx context.Context, now time.Time) error {
	c, err := v.client.Clone()
	if err != nil {
		return err
	}
	c.SetToken(v.token)
	secret, err := c.Auth().Token().RenewSelfWithContext(ctx, 0)
	if err != nil {
		return v.vaultError("auth/token/renew-self", err)
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return errors.New("renewal returned no token")
	}
	if secret.Auth.LeaseDuration <= 0 {
		return errors.New("renewal granted no more time (the token reached its max TTL)")
	}
	v.keepLocked(secret.Auth, now)
	v.logger.Info("renewed the vault token", "lease", time.Duration(secret.Auth.LeaseDuration)*time.Second)
	return nil
}

// keepLocked stores a token and when to renew it: half its lease. A token
// without a lease (root, periodic without TTL) is never renewed.
func (v *vaultIssuer) keepLocked(a *vault.SecretAuth, now time.Time) {
	v.token = a.ClientToken
	v.renewable = a.Renewable
	lease := time.Duration(a.LeaseDuration) * time.Second
	if lease <= 0 {
		lease = neverExpires
	}
	v.renewAt, v.expiresAt = now.Add(lease/2), now.Add(lease)
}

// dropToken forgets token if it is still the current one.
func (v *vaultIssuer) dropToken(token string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.token == token {
		v.token = ""
	}
}

// readSecretFile reads a token or secret ID; the message names the field
// and the file, never the content.
func readSecretFile(issuerName, field, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q: %s: %w", issuerName, field, err))
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", failure.Wrap(failure.Unavailable, fmt.Errorf("issuer %q: %s %s is empty", issuerName, field, path))
	}
	return s, nil
}

// checkIssued checks Vault's answer to pki/sign: certificate parses, is for
// the CSR's key, has exactly the spec's names, and chains through
// ca_chain (or issuing_ca) to the roots of spec.vault.caBundleFile.
func (v *vaultIssuer) checkIssued(secret *vault.Secret, cert *spec.CertificateSpec, csr *x509.CertificateRequest, now time.Time) (*agentproto.Issued, error) {
	certPEM, _ := secret.Data["certificate"].(string)
	leafs, err := pki.ParseCertificatesPEM([]byte(certPEM))
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	if len(leafs) == 0 {
		return nil, errors.New("no certificate in the answer")
	}
	leaf := leafs[0]
	chainPEM := vaultChainPEM(secret.Data)
	chain, err := pki.ParseCertificatesPEM([]byte(chainPEM))
	if err != nil {
		return nil, fmt.Errorf("ca_chain: %w", err)
	}
	if !pki.SamePublicKey(leaf.PublicKey, csr.PublicKey) {
		return nil, errors.New("the certificate is for another key than the CSR's")
	}
	if err := checkVaultLeafNames(leaf, cert); err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	for _, c := range slices.Concat(leafs[1:], chain) {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: v.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("does not chain to %s: %w", v.cfg.CABundleFile, err)
	}
	return pki.NewIssued(leaf, chainPEM), nil
}

// vaultChainPEM is the chain of a pki/sign answer, issuer first: ca_chain
// when Vault sends it, else issuing_ca.
func vaultChainPEM(data map[string]any) string {
	var parts []string
	if list, ok := data["ca_chain"].([]any); ok {
		for _, c := range list {
			if s, ok := c.(string); ok && strings.TrimSpace(s) != "" {
				parts = append(parts, strings.TrimSpace(s)+"\n")
			}
		}
	}
	if len(parts) == 0 {
		if s, ok := data["issuing_ca"].(string); ok && strings.TrimSpace(s) != "" {
			parts = append(parts, strings.TrimSpace(s)+"\n")
		}
	}
	return strings.Join(parts, "")
}

// checkVaultLeafNames reports how the names of an issued leaf differ from
// the spec's: the common name, and the DNS names (case-insensitive), IP
// addresses, URIs and email addresses as sets.
func checkVaultLeafNames(leaf *x509.Certificate, c *spec.CertificateSpec) error {
	var problems []string
	if leaf.Subject.CommonName != c.CommonName {
		problems = append(problems, fmt.Sprintf("common name is %q, want %q", leaf.Subject.CommonName, c.CommonName))
	}
	var ips, uris []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	for _, u := range leaf.URIs {
		uris = append(uris, u.String())
	}
	specIPs := make([]string, 0, len(c.IPAddresses))
	for _, s := range c.IPAddresses {
		if ip := net.ParseIP(s); ip != nil {
			s = ip.String()
		}
		specIPs = append(specIPs, s)
	}
	problems = append(problems, namesDiff("DNS names", leaf.DNSNames, c.DNSNames, strings.ToLower)...)
	problems = append(problems, namesDiff("IP addresses", ips, specIPs, nil)...)
	problems = append(problems, namesDiff("URIs", uris, c.URIs, nil)...)
	problems = append(problems, namesDiff("email addresses", leaf.EmailAddresses, c.EmailAddresses, nil)...)
	if len(problems) > 0 {
		return errors.New("names differ from the spec: " + strings.Join(problems, "; "))
	}
	return nil
}

// namesDiff describes got against want as sets after norm.
func namesDiff(kind string, got, want []string, norm func(string) string) []string {
	set := func(list []string) []string {
		out := make([]string, 0, len(list))
		for _, s := range list {
			if norm != nil {
				s = norm(s)
			}
			out = append(out, s)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	g, w := set(got), set(want)
	if slices.Equal(g, w) {
		return nil
	}
	return []string{fmt.Sprintf("%s are [%s], want [%s]", kind, strings.Join(g, ", "), strings.Join(w, ", "))}
}

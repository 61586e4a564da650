package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/spec"
)

// ParseCSR decodes a PEM "CERTIFICATE REQUEST". It does not check the
// signature; CheckCSR does.
func ParseCSR(pemBytes []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("CSR is not PEM encoded")
	}
	if block.Type != pemCSR && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("CSR PEM block is %q, want %q", block.Type, pemCSR)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CSR: %w", err)
	}
	return csr, nil
}

// NewCSR returns a PEM CSR signed by key carrying the assignment's common
// name and subject alternative names.
func NewCSR(key crypto.Signer, a agentproto.Assignment) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: a.CommonName},
		DNSNames:       a.DNSNames,
		EmailAddresses: a.EmailAddresses,
	}
	var err error
	if tmpl.IPAddresses, err = parseIPs(a.IPAddresses); err != nil {
		return nil, err
	}
	if tmpl.URIs, err = parseURIs(a.URIs); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR for %q: %w", a.Name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der}), nil
}

// MismatchError lists every way a CSR differs from a certificate's spec.
// CheckCSR returns it wrapped as a failure.Rejected error; callers name the
// certificate, e.g. fmt.Errorf("certificate %q: %w", name, err).
type MismatchError struct {
	Problems []string
}

func (e *MismatchError) Error() string {
	return "CSR does not match the certificate spec: " + strings.Join(e.Problems, "; ")
}

// CheckCSR reports whether csr asks for exactly what the certificate spec
// c describes: a valid self-signature; the public key algorithm and size of
// spec.privateKey (ECDSA curve by size, RSA modulus bits, Ed25519); the
// same DNS names (as a set, case-insensitive), IP addresses, URIs and email
// addresses; and the same common name. Every difference is listed in one
// *MismatchError, wrapped as a failure.Rejected error.
func CheckCSR(csr *x509.CertificateRequest, c *spec.CertificateSpec) error {
	var problems []string
	if err := csr.CheckSignature(); err != nil {
		problems = append(problems, fmt.Sprintf("invalid CSR signature: %v", err))
	}
	if got, want := describeKey(csr.PublicKey), describeSpecKey(c.PrivateKey.Algorithm, c.PrivateKey.Size); got != want {
		problems = append(problems, fmt.Sprintf("key is %s, want %s", got, want))
	}
	if got, want := csr.Subject.CommonName, c.CommonName; got != want {
		problems = append(problems, fmt.Sprintf("common name is %q, want %q", got, want))
	}
	problems = append(problems, setDiff("DNS name", csr.DNSNames, c.DNSNames, strings.ToLower)...)
	problems = append(problems, setDiff("IP address", ipStrings(csr.IPAddresses), c.IPAddresses, normalizeIP)...)
	problems = append(problems, setDiff("URI", uriStrings(csr.URIs), c.URIs, normalizeURI)...)
	problems = append(problems, setDiff("email address", csr.EmailAddresses, c.EmailAddresses, nil)...)
	if len(problems) > 0 {
		return failure.Wrap(failure.Rejected, &MismatchError{Problems: problems})
	}
	return nil
}

// describeKey names a public key's algorithm and size: "ECDSA P-256",
// "RSA 2048", "Ed25519".
func describeKey(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return "RSA " + strconv.Itoa(k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("unsupported (%T)", pub)
	}
}

// describeSpecKey is describeKey for the key a spec asks for, with the
// defaults of an unnormalized spec applied.
func describeSpecKey(algorithm string, size int) string {
	switch algorithm {
	case "", spec.AlgorithmECDSA:
		if size == 0 {
			size = defaultECDSASize
		}
		return "ECDSA P-" + strconv.Itoa(size)
	case spec.AlgorithmRSA:
		if size == 0 {
			size = defaultRSASize
		}
		return "RSA " + strconv.Itoa(size)
	default:
		return algorithm
	}
}

// setDiff compares got and want as sets after norm (nil: identity) and
// describes the differences: "unexpected KIND %q" for names only in got,
// "missing KIND %q" for names only in want, in list order.
func setDiff(kind string, got, want []string, norm func(string) string) []string {
	if norm == nil {
		norm = func(s string) string { return s }
	}
	wantSet := make(map[string]bool, len(want))
	for _, w := range want {
		wantSet[norm(w)] = true
	}
	gotSet := make(map[string]bool, len(got))
	var problems []string
	for _, g := range got {
		n := norm(g)
		if !wantSet[n] && !gotSet[n] {
			problems = append(problems, fmt.Sprintf("unexpected %s %q", kind, g))
		}
		gotSet[n] = true
	}
	for _, w := range want {
		n := norm(w)
		if !gotSet[n] {
			problems = append(problems, fmt.Sprintf("missing %s %q", kind, w))
			gotSet[n] = true // report each missing name once
		}
	}
	return problems
}

// normalizeIP is the canonical text of an IP address (IPv4-mapped IPv6
// addresses as IPv4), or s itself when it is not an address.
func normalizeIP(s string) string {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return ip.Unmap().String()
}

// normalizeURI is the re-serialized form of a URI, or s when it does not parse.
func normalizeURI(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return u.String()
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

func uriStrings(uris []*url.URL) []string {
	out := make([]string, len(uris))
	for i, u := range uris {
		out[i] = u.String()
	}
	return out
}

func parseIPs(ss []string) ([]net.IP, error) {
	var ips []net.IP
	for _, s := range ss {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			return nil, fmt.Errorf("%q is not an IP address", s)
		}
		ips = append(ips, net.IP(ip.Unmap().AsSlice()))
	}
	return ips, nil
}

func parseURIs(ss []string) ([]*url.URL, error) {
	var uris []*url.URL
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil || u.Scheme == "" {
			return nil, fmt.Errorf("%q is not an absolute URI", s)
		}
		uris = append(uris, u)
	}
	return uris, nil
}

// CheckCertificateNames reports whether the certificate leaf, which a CA
// other than certops' own returned for c, names exactly what c asks for:
// the same DNS names, IP addresses, URIs and email addresses (as in
// CheckCSR), and c's common name, or, when c has none, no common name or
// one of its DNS names (what CAs that copy the first name put there).
// Every difference is listed in one *MismatchError, wrapped as a
// failure.Rejected error.
func CheckCertificateNames(leaf *x509.Certificate, c *spec.CertificateSpec) error {
	var problems []string
	cn := leaf.Subject.CommonName
	switch {
	case c.CommonName != "" && cn != c.CommonName:
		problems = append(problems, fmt.Sprintf("common name is %q, want %q", cn, c.CommonName))
	case c.CommonName == "" && cn != "" && !slices.ContainsFunc(c.DNSNames, func(n string) bool { return strings.EqualFold(n, cn) }):
		problems = append(problems, fmt.Sprintf("common name %q is none of the DNS names", cn))
	}
	problems = append(problems, setDiff("DNS name", leaf.DNSNames, c.DNSNames, strings.ToLower)...)
	problems = append(problems, setDiff("IP address", ipStrings(leaf.IPAddresses), c.IPAddresses, normalizeIP)...)
	problems = append(problems, setDiff("URI", uriStrings(leaf.URIs), c.URIs, normalizeURI)...)
	problems = append(problems, setDiff("email address", leaf.EmailAddresses, c.EmailAddresses, nil)...)
	if len(problems) > 0 {
		return failure.Wrap(failure.Rejected, &CertificateMismatchError{Problems: problems})
	}
	return nil
}

// CertificateMismatchError lists every way a certificate's names differ
// from its spec's (see CheckCertificateNames).
type CertificateMismatchError struct {
	Problems []string
}

func (e *CertificateMismatchError) Error() string {
	return "certificate does not match the certificate spec: " + strings.Join(e.Problems, "; ")
}

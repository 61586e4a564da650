package spec

import (
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// LetsEncryptCertificatesPerNameSetPerWeek is Let's Encrypt's limit of new
// certificates for one exact set of names in 7 days (its "duplicate
// certificate" limit), the default of spec.acme.rateLimits for its
// directories.
const LetsEncryptCertificatesPerNameSetPerWeek = 5

// CertificatesPerNameSetPerWeek is how many certificates for one exact set
// of names certops orders from the issuer in any 7 days; 0 is no limit.
// Unset, it is LetsEncryptCertificatesPerNameSetPerWeek for a Let's Encrypt
// directory (production or staging, which mirrors production's limits
// here so a staged rollout behaves as the real one will) and no limit for
// any other CA.
func (a *ACMEIssuer) CertificatesPerNameSetPerWeek() int {
	if rl := a.RateLimits; rl != nil && rl.CertificatesPerNameSetPerWeek != nil {
		return max(*rl.CertificatesPerNameSetPerWeek, 0)
	}
	if isLetsEncrypt(a.DirectoryURL) {
		return LetsEncryptCertificatesPerNameSetPerWeek
	}
	return 0
}

// isLetsEncrypt reports whether an ACME directory URL is Let's Encrypt's.
func isLetsEncrypt(directoryURL string) bool {
	u, err := url.Parse(directoryURL)
	if err != nil {
		return false
	}
	host := strings.ToLower(u.Hostname())
	return host == "letsencrypt.org" || strings.HasSuffix(host, ".letsencrypt.org")
}

// NameSet is the certificate's exact set of names as a CA counts it for
// rate limits: its DNS names (lowercase) and IP addresses (canonical form),
// sorted, without duplicates, joined by commas. Two certificates with the
// same NameSet count against one another's limit.
func (s *CertificateSpec) NameSet() string {
	names := make([]string, 0, len(s.DNSNames)+len(s.IPAddresses))
	for _, n := range s.DNSNames {
		names = append(names, strings.ToLower(strings.TrimSuffix(n, ".")))
	}
	for _, ip := range s.IPAddresses {
		if a, err := netip.ParseAddr(ip); err == nil {
			ip = a.Unmap().String()
		}
		names = append(names, ip)
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), ",")
}

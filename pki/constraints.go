package pki

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/spec"
)

// noMailboxOrURIHost is the one email and URI name a DNS-constrained CA
// made by NewCA permits: a host under the reserved top-level domain
// "invalid" (RFC 6761 §6.4), which no real mailbox or URI host has. It has
// two labels because RFC 5280 §4.2.1.10 wants a URI constraint to be a
// fully qualified domain name (zlint's e_name_constraint_not_fqdn); CAs
// made before carry the bare "invalid" (oldNoMailboxOrURIHost). A permitted subtree of a
// kind is what closes that kind under RFC 5280 (a kind without one is
// unconstrained), and unlike an empty excluded name it is understood by
// Go's and OpenSSL's verifiers alike.
const (
	noMailboxOrURIHost    = "none.invalid"
	oldNoMailboxOrURIHost = "invalid"
)

// allIPs are the excluded ranges of a DNS-constrained CA made by NewCA:
// every IPv4 and IPv6 address.
func allIPs() []*net.IPNet {
	return []*net.IPNet{
		{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
	}
}

// CheckNames reports whether the CA's name constraints permit every name of
// the certificate spec c: its DNS names and a common name that is a host
// name, IP addresses, email addresses and URIs. A CA without constraints
// permits all. A CA that permits some names of any kind permits only names
// its permitted subtrees cover, of every kind: a CA constrained to DNS
// domains signs no IP address, email address or URI, whatever RFC 5280 says
// of kinds without a subtree (NewCA writes those closed; an older CA may
// not). Every name refused is listed in one failure.Rejected error with the
// code name_not_permitted.
func (ca *CA) CheckNames(c *spec.CertificateSpec) error {
	cert := ca.cert
	if !hasNameConstraints(cert) {
		return nil
	}
	anyPermitted := len(cert.PermittedDNSDomains)+len(cert.PermittedIPRanges)+
		len(cert.PermittedEmailAddresses)+len(cert.PermittedURIDomains) > 0
	var problems []string
	check := func(kind, name string, permitted, excluded []string, match func(name, constraint string) bool) {
		switch {
		case anyMatch(name, excluded, match):
			problems = append(problems, fmt.Sprintf("%s %q is not permitted (excluded: %s)", kind, name, strings.Join(excluded, ", ")))
		case len(permitted) > 0 && anyMatch(name, permitted, match):
		case len(permitted) == 0 && !anyPermitted:
		case len(permitted) == 0 || slices.Equal(permitted, []string{noMailboxOrURIHost}) ||
			slices.Equal(permitted, []string{oldNoMailboxOrURIHost}):
			problems = append(problems, fmt.Sprintf("%s %q is not permitted (the CA permits no %s)", kind, name, kind))
		default:
			problems = append(problems, fmt.Sprintf("%s %q is not permitted (permitted: %s)", kind, name, strings.Join(permitted, ", ")))
		}
	}
	dnsNames := c.DNSNames
	if isHostName(c.CommonName) && !containsFold(dnsNames, c.CommonName) {
		dnsNames = append([]string{c.CommonName}, dnsNames...) // OpenSSL checks such a common name too
	}
	for _, n := range dnsNames {
		check("DNS name", n, cert.PermittedDNSDomains, cert.ExcludedDNSDomains, matchDNS)
	}
	ips, err := parseIPs(c.IPAddresses)
	if err != nil {
		return failure.Wrap(failure.Invalid, err)
	}
	for _, ip := range ips {
		check("IP address", ip.String(), cidrs(cert.PermittedIPRanges), cidrs(cert.ExcludedIPRanges), matchIP)
	}
	for _, e := range c.EmailAddresses {
		check("email address", e, cert.PermittedEmailAddresses, cert.ExcludedEmailAddresses, matchEmail)
	}
	for _, u := range c.URIs {
		check("URI", u, cert.PermittedURIDomains, cert.ExcludedURIDomains, matchURI)
	}
	if len(problems) == 0 {
		return nil
	}
	return failure.WithCode(failure.Wrap(failure.Rejected, fmt.Errorf("the CA %q may not sign these names: %s",
		cert.Subject.CommonName, strings.Join(problems, "; "))), agentproto.CodeNameNotPermitted)
}

func anyMatch(name string, constraints []string, match func(name, constraint string) bool) bool {
	for _, c := range constraints {
		if match(name, c) {
			return true
		}
	}
	return false
}

// matchDNS is RFC 5280's dNSName rule: the name is the constraint or
// under it; a constraint with a leading dot only matches names under it;
// the empty constraint matches every name.
func matchDNS(name, constraint string) bool {
	name, constraint = strings.ToLower(strings.TrimSuffix(name, ".")), strings.ToLower(constraint)
	if constraint == "" {
		return true
	}
	if strings.HasPrefix(constraint, ".") {
		return strings.HasSuffix(name, constraint)
	}
	return name == constraint || strings.HasSuffix(name, "."+constraint)
}

// matchHost is RFC 5280's rule for the host of an rfc822Name or URI: the
// constraint is the host itself, or with a leading dot any host under it.
func matchHost(host, constraint string) bool {
	host, constraint = strings.ToLower(host), strings.ToLower(constraint)
	if strings.HasPrefix(constraint, ".") {
		return strings.HasSuffix(host, constraint)
	}
	return host == constraint
}

// matchEmail: a constraint with an "@" is one mailbox, otherwise a host.
func matchEmail(addr, constraint string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false
	}
	if strings.Contains(constraint, "@") {
		c := strings.LastIndexByte(constraint, '@')
		return addr[:at] == constraint[:c] && strings.EqualFold(addr[at+1:], constraint[c+1:])
	}
	return matchHost(addr[at+1:], constraint)
}

// matchURI matches the URI's host; a URI without a host name (or with an
// IP address as host) matches no constraint.
func matchURI(uri, constraint string) bool {
	u, err := url.Parse(uri)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "" || net.ParseIP(host) != nil {
		return false
	}
	return matchHost(host, constraint)
}

func matchIP(ip, cidr string) bool {
	_, n, err := net.ParseCIDR(cidr)
	addr := net.ParseIP(ip)
	if err != nil || addr == nil {
		return false
	}
	if v4 := addr.To4(); v4 != nil && len(n.IP) == net.IPv4len {
		addr = v4
	}
	return len(addr) == len(n.IP) && n.Contains(addr)
}

func cidrs(ns []*net.IPNet) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.String()
	}
	return out
}

// isHostName reports whether s looks like a DNS host name with at least two
// labels (as OpenSSL decides whether to check a common name).
func isHostName(s string) bool {
	if !strings.Contains(s, ".") || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '*') {
				return false
			}
		}
	}
	return true
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// hasNameConstraints reports whether c carries name constraints of any kind.
func hasNameConstraints(c *x509.Certificate) bool {
	return len(c.PermittedDNSDomains)+len(c.ExcludedDNSDomains)+
		len(c.PermittedIPRanges)+len(c.ExcludedIPRanges)+
		len(c.PermittedEmailAddresses)+len(c.ExcludedEmailAddresses)+
		len(c.PermittedURIDomains)+len(c.ExcludedURIDomains) > 0
}

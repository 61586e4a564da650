package spec

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Per-kind semantic validation. Paths in errors are the YAML field paths.

// DefaultDuration is a certificate's lifetime when spec.duration is empty.
const DefaultDuration = 2160 * time.Hour

// Private key algorithms and rotation policies.
const (
	AlgorithmECDSA   = "ECDSA"
	AlgorithmRSA     = "RSA"
	AlgorithmEd25519 = "Ed25519"

	RotationAlways = "Always"
	RotationNever  = "Never"
)

// keyUsages are the accepted certificate usages in cert-manager's canonical
// form; the kebab-case form ("server-auth") is accepted too.
var keyUsages = [...]string{
	"signing", "digital signature", "content commitment", "key encipherment",
	"key agreement", "data encipherment", "cert sign", "crl sign",
	"encipher only", "decipher only", "any", "server auth", "client auth",
	"code signing", "email protection", "s/mime", "ipsec end system",
	"ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
	"microsoft sgc", "netscape sgc",
}

// canonicalUsage returns the canonical form of a usage, or "" if unknown.
func canonicalUsage(u string) string {
	c := strings.ReplaceAll(u, "-", " ")
	for _, k := range keyUsages {
		if k == c {
			return k
		}
	}
	return ""
}

func (c *checker) issuer(s *IssuerSpec) {
	c.exactlyOne("spec", []string{"localCA", "acme", "external", "vault"}, s.LocalCA != nil, s.ACME != nil, s.External != nil, s.Vault != nil)
	if s.External != nil {
		c.external(s.External)
	}
	if s.Vault != nil {
		c.vault(s.Vault)
	}
	if ca := s.LocalCA; ca != nil {
		c.requiredAbsPath("spec.localCA.certFile", ca.CertFile)
		c.requiredAbsPath("spec.localCA.keyFile", ca.KeyFile)
		if ca.PublicURL != "" {
			c.publicURL("spec.localCA.publicURL", ca.PublicURL)
		}
	}
	a := s.ACME
	if a == nil {
		return
	}
	if a.DirectoryURL != "" {
		c.httpURL("spec.acme.directoryURL", a.DirectoryURL, true)
	}
	if a.Email != "" {
		c.email("spec.acme.email", a.Email)
	}
	c.requiredAbsPath("spec.acme.accountKeyFile", a.AccountKeyFile)
	c.absPath("spec.acme.caBundleFile", a.CABundleFile)
	if a.EAB != nil {
		if a.EAB.KeyID == "" {
			c.errorf("spec.acme.eab.keyID", "required")
		}
		c.requiredAbsPath("spec.acme.eab.hmacFile", a.EAB.HMACFile)
	}
	if a.Profile != "" && !isToken(a.Profile) {
		c.errorf("spec.acme.profile", "%q is not a valid profile name", a.Profile)
	}
	if rl := a.RateLimits; rl != nil && rl.CertificatesPerNameSetPerWeek != nil && *rl.CertificatesPerNameSetPerWeek < 0 {
		c.errorf("spec.acme.rateLimits.certificatesPerNameSetPerWeek", "%d is negative (0 means no limit)", *rl.CertificatesPerNameSetPerWeek)
	}
	ch := a.Challenge
	c.exactlyOne("spec.acme.challenge", []string{"http01", "dns01", "dnsPersist01"},
		ch.HTTP01 != nil, ch.DNS01 != nil, ch.DNSPersist01 != nil)
	if ch.HTTP01 != nil {
		c.requiredAbsPath("spec.acme.challenge.http01.webroot", ch.HTTP01.Webroot)
	}
	if d := ch.DNS01; d != nil {
		c.dns01("spec.acme.challenge.dns01", d)
	}
	if d := ch.DNSPersist01; d != nil {
		c.dnsPersist01("spec.acme.challenge.dnsPersist01", d)
	}
}

// DNSProviders are the lego DNS providers compiled into certops, the names
// spec.acme.challenge.dns01.provider accepts. Package issuer holds their
// constructors, one per name.
var DNSProviders = []string{"acmedns", "cloudflare", "exec", "httpreq", "pdns"}

func (c *checker) dns01(path string, d *DNS01Challenge) {
	scripts := d.PresentScript != "" || d.CleanupScript != "" || d.PropagationWait != ""
	provider := d.Provider != "" || d.EnvFile != ""
	switch {
	case scripts && provider:
		c.errorf(path, "use either scripts (presentScript, cleanupScript, propagationWait) or a provider (provider, envFile), not both")
		return
	case !scripts && !provider:
		c.errorf(path, "one of presentScript or provider is required")
		return
	case scripts:
		c.requiredAbsPath(path+".presentScript", d.PresentScript)
		c.absPath(path+".cleanupScript", d.CleanupScript)
		c.duration(path+".propagationWait", d.PropagationWait)
	default:
		if d.Provider == "" {
			c.errorf(path+".provider", "required with envFile")
		} else if !slices.Contains(DNSProviders, d.Provider) {
			c.errorf(path+".provider", "%q is not a DNS provider compiled into certops (want one of %s)", d.Provider, strings.Join(DNSProviders, ", "))
		}
		c.absPath(path+".envFile", d.EnvFile)
	}
}

// emptySHA256 is the SHA-256 of the empty string: what hashing an empty
// token file gives.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func (c *checker) agent(s *AgentSpec) {
	switch {
	case s.TokenSHA256 == "":
	case !isLowerHex64(s.TokenSHA256):
		c.errorf("spec.tokenSHA256", "%s", tokenHashProblem(s.TokenSHA256))
	case s.TokenSHA256 == emptySHA256:
		c.errorf("spec.tokenSHA256", "is the SHA-256 of the empty string, so the token it was made from was empty (an empty token file?); hash the real token")
	}
}

func isLowerHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; !('0' <= b && b <= '9' || 'a' <= b && b <= 'f') {
			return false
		}
	}
	return true
}

// MaxReissueLength bounds spec.reissue of a Certificate.
const MaxReissueLength = 128

func (c *checker) certificate(s *CertificateSpec) {
	if s.IssuerRef != "" {
		c.name("spec.issuerRef", s.IssuerRef)
	}
	if s.CommonName == "" && len(s.DNSNames)+len(s.IPAddresses)+len(s.URIs)+len(s.EmailAddresses) == 0 {
		c.errorf("spec", "at least one of commonName, dnsNames, ipAddresses, uris or emailAddresses is required")
	}
	if len(s.CommonName) > 64 {
		c.errorf("spec.commonName", "is %d characters long, more than the X.509 limit of 64", len(s.CommonName))
	}
	switch {
	case len(s.Reissue) > MaxReissueLength:
		c.errorf("spec.reissue", "is %d bytes long, more than %d; any short string will do (a date, a ticket number)", len(s.Reissue), MaxReissueLength)
	case strings.ContainsFunc(s.Reissue, unicode.IsControl):
		c.errorf("spec.reissue", "%q holds a control character; use printable text (a date, a ticket number)", s.Reissue)
	}
	seen := map[string]int{}
	for i, n := range s.DNSNames {
		path := fmt.Sprintf("spec.dnsNames[%d]", i)
		if _, err := netip.ParseAddr(n); err == nil {
			c.errorf(path, "%q is an IP address; list it under ipAddresses", n)
		} else if msg := dnsNameProblem(n, true); msg != "" {
			c.errorf(path, "%q is not a valid DNS name: %s", n, msg)
		}
		c.unique(seen, path, "spec.dnsNames", strings.ToLower(n), i)
	}
	clear(seen)
	for i, a := range s.IPAddresses {
		path := fmt.Sprintf("spec.ipAddresses[%d]", i)
		ip, err := netip.ParseAddr(a)
		if err != nil || ip.Zone() != "" {
			c.errorf(path, "%q is not a valid IP address", a)
			continue
		}
		c.unique(seen, path, "spec.ipAddresses", ip.Unmap().String(), i)
	}
	for i, u := range s.URIs {
		if p, err := url.Parse(u); err != nil || p.Scheme == "" || strings.ContainsAny(u, " \t\r\n") {
			c.errorf(fmt.Sprintf("spec.uris[%d]", i), "%q is not an absolute URI with a scheme", RedactURL(u))
		}
	}
	for i, e := range s.EmailAddresses {
		c.email(fmt.Sprintf("spec.emailAddresses[%d]", i), e)
	}
	c.lifetime(s)
	c.privateKey(&s.PrivateKey)
	c.usages(s.Usages, s.PrivateKey.Algorithm)
	if sub := s.Subject; sub != nil {
		for i, country := range sub.Countries {
			if len(country) != 2 {
				c.errorf(fmt.Sprintf("spec.subject.countries[%d]", i), "%q is not a two-letter country code", country)
			}
		}
	}
	if s.Deploy != nil {
		c.deploy(s.Deploy)
	}
}

// usages checks spec.usages: each is known, fits a leaf certificate and
// its key (see usageKeyConflict), and "encipher only" or "decipher only"
// comes with the "key agreement" it restricts, never both of them.
func (c *checker) usages(usages []string, algorithm string) {
	canonical := make([]string, len(usages))
	for i, u := range usages {
		canonical[i] = canonicalUsage(u)
	}
	keyAgreement := slices.Contains(canonical, "key agreement")
	only := -1 // index of the first "encipher only" or "decipher only"
	for i, u := range usages {
		path := fmt.Sprintf("spec.usages[%d]", i)
		switch canonical[i] {
		case "":
			c.errorf(path, "%q is not a known usage (e.g. \"digital signature\", \"key encipherment\", \"server auth\", \"client auth\")", u)
			continue
		case "cert sign", "crl sign":
			c.errorf(path, "%q is for CA certificates; certops issues leaf certificates, which must not carry it (RFC 5280, 4.2.1.3)", u)
			continue
		}
		if why := usageKeyConflict(canonical[i], algorithm); why != "" {
			c.errorf(path, "%q %s", u, why)
			continue
		}
		if canonical[i] != "encipher only" && canonical[i] != "decipher only" {
			continue
		}
		switch {
		case !keyAgreement:
			c.errorf(path, "%q only restricts \"key agreement\", which spec.usages does not list, so it means nothing on its own (RFC 5280, 4.2.1.3); add \"key agreement\" or drop it", u)
		case only >= 0 && canonical[only] != canonical[i]:
			c.errorf(path, "%q contradicts %q at spec.usages[%d]: the key may be restricted to enciphering or to deciphering during key agreement, not both (RFC 5480, section 3); keep one of them", u, usages[only], only)
		}
		if only < 0 {
			only = i
		}
	}
}

// usageKeyConflict says why a (canonical) key usage contradicts a private
// key algorithm, or returns "". ECDSA keys sign and agree keys but cannot
// encipher (RFC 5480, RFC 8813); RSA keys sign and encipher but cannot
// agree keys (RFC 3279, 2.3.1), so "encipher only" and "decipher only",
// which restrict key agreement, contradict them too; Ed25519 keys only sign
// (RFC 8410). pki signs any usage the spec lists (and, without usages,
// gives only RSA keys key encipherment), so this is the one place these
// contradictions are caught.
func usageKeyConflict(usage, algorithm string) string {
	switch algorithm {
	case "", AlgorithmECDSA:
		if usage == "key encipherment" || usage == "data encipherment" {
			return "contradicts the ECDSA key, which cannot encipher (RFC 8813); use \"digital signature\""
		}
	case AlgorithmRSA:
		switch usage {
		case "key agreement":
			return "contradicts the RSA key, which can sign and encipher but not agree keys (RFC 3279, section 2.3.1); use \"key encipherment\" or \"digital signature\""
		case "encipher only", "decipher only":
			return "contradicts the RSA key: it restricts key agreement, which an RSA key cannot do (RFC 3279, section 2.3.1); drop it"
		}
	case AlgorithmEd25519:
		switch usage {
		case "key encipherment", "data encipherment", "key agreement", "encipher only", "decipher only":
			return "contradicts the Ed25519 key, which can only sign (RFC 8410, section 5); use \"digital signature\""
		}
	}
	return ""
}

// unique reports a repeated entry of a list; seen maps keys to indexes.
func (c *checker) unique(seen map[string]int, path, list, key string, i int) {
	if j, dup := seen[key]; dup {
		c.errorf(path, "duplicate of %s[%d]", list, j)
		return
	}
	seen[key] = i
}

func (c *checker) lifetime(s *CertificateSpec) {
	duration, written := DefaultDuration, "the default duration 2160h"
	if s.Duration != "" {
		written = "the duration " + s.Duration
		d, msg := parsePositiveDuration(s.Duration)
		if msg != "" {
			c.errorf("spec.duration", "%q %s", s.Duration, msg)
			return
		}
		duration = d
	}
	if s.RenewBefore != "" && s.RenewBeforePercentage != nil {
		c.errorf("spec.renewBeforePercentage", "set either renewBefore or renewBeforePercentage, not both")
		return
	}
	if p := s.RenewBeforePercentage; p != nil && (*p < 1 || *p > 99) {
		c.errorf("spec.renewBeforePercentage", "%d is out of range 1-99", *p)
	}
	if s.RenewBefore != "" {
		rb, msg := parsePositiveDuration(s.RenewBefore)
		switch {
		case msg != "":
			c.errorf("spec.renewBefore", "%q %s", s.RenewBefore, msg)
		case rb >= duration:
			c.errorf("spec.renewBefore", "%s must be shorter than %s", s.RenewBefore, written)
		}
	}
}

func (c *checker) privateKey(k *PrivateKey) {
	const path = "spec.privateKey"
	switch k.Algorithm {
	case "", AlgorithmECDSA:
		if k.Size != 0 && k.Size != 256 && k.Size != 384 && k.Size != 521 {
			c.errorf(path+".size", "%d is not an ECDSA curve size (256, 384 or 521)", k.Size)
		}
	case AlgorithmRSA:
		if k.Size != 0 && (k.Size < 2048 || k.Size > 8192 || k.Size%8 != 0) {
			c.errorf(path+".size", "%d is not a valid RSA key size (2048 to 8192, a multiple of 8)", k.Size)
		}
	case AlgorithmEd25519:
		if k.Size != 0 {
			c.errorf(path+".size", "must be omitted for Ed25519")
		}
	default:
		c.errorf(path+".algorithm", "%q is not supported (want ECDSA, RSA or Ed25519)", k.Algorithm)
	}
	switch k.RotationPolicy {
	case "", RotationAlways, RotationNever:
	default:
		c.errorf(path+".rotationPolicy", "%q is not supported (want Always or Never)", k.RotationPolicy)
	}
}

// targeting checks which agents a deploy block at path names or selects:
// at least one way, valid and distinct names, valid selector labels. A
// Certificate's and a TrustBundle's deploy blocks share it.
func (c *checker) targeting(path string, agents []string, sel *LabelSelector) {
	if len(agents) == 0 && (sel == nil || len(sel.MatchLabels) == 0) {
		c.errorf(path, "at least one of agents or agentSelector.matchLabels is required")
	}
	seen := map[string]int{}
	for i, a := range agents {
		p := fmt.Sprintf("%s.agents[%d]", path, i)
		c.name(p, a)
		c.unique(seen, p, path+".agents", a, i)
	}
	if sel != nil {
		c.labels(path+".agentSelector.matchLabels", sel.MatchLabels, true)
	}
}

func (c *checker) deploy(d *Deployment) {
	const path = "spec.deploy"
	c.targeting(path, d.Agents, d.AgentSelector)
	c.deployFiles(&d.Files)
	switch {
	case d.Reload != nil && (len(d.Reload) == 0 || d.Reload[0] == ""):
		c.errorf(path+".reload", "must be a non-empty argv list whose first element is the command")
	case len(d.Reload) > 0 && strings.ContainsAny(d.Reload[0], " \t\n"):
		// The command line may hold a URL with credentials: mask them.
		split := append(strings.Fields(d.Reload[0]), d.Reload[1:]...)
		for i := range split {
			split[i] = RedactText(split[i])
		}
		c.errorf(path+".reload[0]", "%q is a whole command line in one element, but reload is an argv list run without a shell, so no program of that name exists; write %s", RedactText(d.Reload[0]), flowList(split))
	}
	if v := d.Verify; v != nil {
		if msg := hostPortProblem(v.Address); v.Address != "" && msg != "" {
			c.errorf(path+".verify.address", "%q %s", v.Address, msg)
		}
		if msg := dnsNameProblem(v.ServerName, false); v.ServerName != "" && msg != "" {
			c.errorf(path+".verify.serverName", "%q is not a valid DNS name: %s", v.ServerName, msg)
		}
	}
}

func (c *checker) deployFiles(f *DeployFiles) {
	const path = "spec.deploy.files"
	if f.Cert == "" && f.Fullchain == "" && f.Combined == "" && f.DER == "" && f.PKCS12 == "" && f.JKS == "" {
		c.errorf(path, "at least one of cert, fullchain, combined, der, pkcs12 or jks is required")
	}
	seen := map[string]string{}
	for _, file := range deployFiles(f) {
		c.absPath(path+"."+file.field, file.path)
		if other, dup := seen[file.path]; dup {
			c.errorf(path+"."+file.field, "%q is also the %s path", file.path, other)
		}
		seen[file.path] = file.field
	}
	// The password files are read on the host, never written.
	for _, pw := range []struct{ field, form, formPath, p string }{
		{"pkcs12PasswordFile", "pkcs12", f.PKCS12, f.PKCS12PasswordFile},
		{"jksPasswordFile", "jks", f.JKS, f.JKSPasswordFile},
	} {
		switch {
		case pw.formPath != "" && pw.p == "":
			c.errorf(path+"."+pw.field, "required with %s: the path of a file on the agent host that holds the %s password (never the password itself)", pw.form, pw.form)
		case pw.formPath == "" && pw.p != "":
			c.errorf(path+"."+pw.field, "is set, but %s is not: drop it or set %s", pw.form, pw.form)
		}
		c.absPath(path+"."+pw.field, pw.p)
		if other, dup := seen[pw.p]; dup && pw.p != "" {
			c.errorf(path+"."+pw.field, "%q is also the %s path, which the agent writes", pw.p, other)
		}
	}
	switch n := f.PKCS12FriendlyName; {
	case n != "" && f.PKCS12 == "":
		c.errorf(path+".pkcs12FriendlyName", "is set, but pkcs12 is not: drop it or set pkcs12")
	case n != "" && !isFriendlyName(n):
		c.errorf(path+".pkcs12FriendlyName", "%q is not a friendly name: 1 to 64 printable characters of the Basic Multilingual Plane", n)
	}
	switch a := f.JKSAlias; {
	case a != "" && f.JKS == "":
		c.errorf(path+".jksAlias", "is set, but jks is not: drop it or set jks")
	case a != "" && !isJKSAlias(a):
		c.errorf(path+".jksAlias", "%q is not a keystore alias: lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 (keytool shows aliases lowercased)", a)
	}
	switch f.Layout {
	case "", LayoutFiles:
	case LayoutSymlink:
		dir := ""
		for _, df := range deployFiles(f) {
			if d := df.path[:strings.LastIndexByte(df.path, '/')+1]; dir == "" {
				dir = d
			} else if d != dir {
				c.errorf(path+".layout", "symlink needs every file in one directory, but %s is not in %s", df.path, dir)
				break
			}
		}
	default:
		c.errorf(path+".layout", "%q is not one of %s", f.Layout, strings.Join(Layouts, ", "))
	}
	if f.Mode != "" {
		m, err := strconv.ParseUint(f.Mode, 8, 32)
		if err != nil || m > 0o777 || len(f.Mode) < 3 || len(f.Mode) > 4 {
			c.errorf(path+".mode", "%q is not an octal file mode up to \"0777\" (e.g. \"0600\")", f.Mode)
		}
	}
	if f.Owner != "" && !isOwner(f.Owner) {
		c.errorf(path+".owner", "%q is not a valid user name or uid", f.Owner)
	}
	if f.Group != "" && !isOwner(f.Group) {
		c.errorf(path+".group", "%q is not a valid group name or gid", f.Group)
	}
}

// isFriendlyName reports whether s can be a PKCS#12 friendly name (a
// BMPString): 1 to 64 printable characters, none beyond U+FFFF.
func isFriendlyName(s string) bool {
	n := 0
	for _, r := range s {
		if r == utf8.RuneError || r > 0xFFFF || !unicode.IsPrint(r) {
			return false
		}
		n++
	}
	return n > 0 && n <= 64
}

// isJKSAlias reports whether s is a keystore alias that keytool shows as
// written: 1 to 64 lowercase letters, digits, '.', '_' and '-', starting
// with a letter or digit.
func isJKSAlias(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case 'a' <= b && b <= 'z', '0' <= b && b <= '9':
		case i > 0 && (b == '.' || b == '_' || b == '-'):
		default:
			return false
		}
	}
	return true
}

func (c *checker) alertPolicy(s *AlertPolicySpec) {
	if e := s.CertificateExpiring; e != nil {
		c.expiryThreshold("spec.certificateExpiring.warning", e.Warning)
		c.expiryThreshold("spec.certificateExpiring.critical", e.Critical)
		if e.Warning == nil && e.Critical == nil {
			c.errorf("spec.certificateExpiring", "at least one of warning or critical is required")
		}
		c.expiryOrder(e)
	}
	for _, d := range []struct{ path, value string }{
		{"spec.renewalOverdueAfter", s.RenewalOverdueAfter},
		{"spec.agentOfflineAfter", s.AgentOfflineAfter},
		{"spec.reconcileStalledAfter", s.ReconcileStalled},
		{"spec.sourceStaleAfter", s.SourceStale},
		{"spec.backupTooOldAfter", s.BackupTooOld},
		{"spec.servedMismatchAfter", s.ServedMismatchAfter},
		{"spec.renotifyInterval", s.RenotifyInterval},
	} {
		c.duration(d.path, d.value)
	}
	if r := s.JobFailureRatio; r != nil {
		if r.Ratio <= 0 || r.Ratio > 1 {
			c.errorf("spec.jobFailureRatio.ratio", "%v is out of range (0, 1]", r.Ratio)
		}
		c.duration("spec.jobFailureRatio.window", r.Window)
		if r.MinJobs < 0 {
			c.errorf("spec.jobFailureRatio.minJobs", "must not be negative")
		}
	}
	if f := s.IssuanceFailures; f != nil {
		if f.Count < 0 {
			c.errorf("spec.issuanceFailures.count", "must not be negative")
		}
		c.duration("spec.issuanceFailures.window", f.Window)
	}
	seen := map[string]int{}
	for i, n := range s.Notify {
		p := fmt.Sprintf("spec.notify[%d]", i)
		c.name(p, n)
		c.unique(seen, p, "spec.notify", n, i)
	}
	c.alertRoutes(s.Routes)
}

func (c *checker) expiryThreshold(path string, t *ExpiryThreshold) {
	if t == nil {
		return
	}
	if t.Remaining == "" && t.RemainingFraction == nil {
		c.errorf(path, "at least one of remaining or remainingFraction is required")
	}
	c.duration(path+".remaining", t.Remaining)
	if f := t.RemainingFraction; f != nil && !fractionInRange(*f) {
		c.errorf(path+".remainingFraction", "%v is out of range (0, 1)", *f)
	}
}

// expiryOrder checks that the warning threshold lies before the critical
// one in each form both set: a warning at or below the critical threshold
// can never fire before the critical alert.
func (c *checker) expiryOrder(e *ExpiryThresholds) {
	w, cr := e.Warning, e.Critical
	if w == nil || cr == nil {
		return
	}
	const path = "spec.certificateExpiring.warning"
	if w.Remaining != "" && cr.Remaining != "" {
		wd, wmsg := parsePositiveDuration(w.Remaining)
		cd, cmsg := parsePositiveDuration(cr.Remaining)
		if wmsg == "" && cmsg == "" && wd <= cd {
			c.errorf(path+".remaining", "%s is not longer than critical.remaining %s, so the warning can never fire before the critical alert", w.Remaining, cr.Remaining)
		}
	}
	if wf, cf := w.RemainingFraction, cr.RemainingFraction; wf != nil && cf != nil && fractionInRange(*wf) && fractionInRange(*cf) && *wf <= *cf {
		c.errorf(path+".remainingFraction", "%v is not larger than critical.remainingFraction %v, so the warning can never fire before the critical alert", *wf, *cf)
	}
}

func fractionInRange(f float64) bool { return f > 0 && f < 1 }

func (c *checker) notificationChannel(s *NotificationChannelSpec) {
	c.exactlyOne("spec", []string{"slack", "smtp", "webhook", "alertmanager", "pagerduty", "teams"},
		s.Slack != nil, s.SMTP != nil, s.Webhook != nil, s.Alertmanager != nil, s.PagerDuty != nil, s.Teams != nil)
	c.moreChannels(s)
	if sl := s.Slack; sl != nil {
		c.requiredAbsPath("spec.slack.webhookURLFile", sl.WebhookURLFile)
	}
	if m := s.SMTP; m != nil {
		if _, err := netip.ParseAddr(m.Host); m.Host != "" && err != nil && !isDNSName(m.Host, false) {
			if strings.ContainsAny(m.Host, "@/") {
				// smtp://user:password@host:port pasted whole
				c.errorf("spec.smtp.host", "must be a bare host name or IP address, not a URL or user@host; set port, username and passwordFile on their own (value not shown: it may hold credentials)")
			} else {
				c.errorf("spec.smtp.host", "%q is not a valid host name or IP address: %s", m.Host, dnsNameProblem(m.Host, false))
			}
		}
		if m.Port < 1 || m.Port > 65535 {
			c.errorf("spec.smtp.port", "%d is out of range 1-65535", m.Port)
		}
		if m.From != "" {
			c.email("spec.smtp.from", m.From)
		}
		if len(m.To) == 0 {
			c.errorf("spec.smtp.to", "at least one recipient is required")
		}
		for i, to := range m.To {
			c.email(fmt.Sprintf("spec.smtp.to[%d]", i), to)
		}
		c.absPath("spec.smtp.passwordFile", m.PasswordFile)
		if m.StartTLS != nil && !*m.StartTLS && (m.Username != "" || m.PasswordFile != "") {
			c.errorf("spec.smtp.startTLS", "false with username or passwordFile set: certops never sends credentials over a plain-text connection, so every delivery would be refused; set startTLS: true, or drop username and passwordFile for an unauthenticated relay")
		}
		c.smtpSecurity(m)
	}
	if w := s.Webhook; w != nil {
		if w.URL != "" {
			c.httpURL("spec.webhook.url", w.URL, false)
		}
		c.absPath("spec.webhook.hmacSecretFile", w.HMACSecretFile)
	}
}

func (c *checker) backupPolicy(s *BackupPolicySpec) {
	if s.Schedule != "" {
		if err := checkCron(s.Schedule); err != nil {
			c.errorf("spec.schedule", "%q is not a valid cron schedule: %v", s.Schedule, err)
		}
	}
	r := s.Retention
	if r.Count < 0 {
		c.errorf("spec.retention.count", "must not be negative")
	}
	if r.Count == 0 && r.MaxAge == "" {
		c.errorf("spec.retention", "at least one of count or maxAge is required")
	}
	c.duration("spec.retention.maxAge", r.MaxAge)
	d := s.Destination
	c.exactlyOne("spec.destination", []string{"directory", "s3"}, d.Directory != "", d.S3 != nil)
	c.absPath("spec.destination.directory", d.Directory)
	if s3 := d.S3; s3 != nil {
		const path = "spec.destination.s3"
		if s3.Bucket != "" && !isBucketName(s3.Bucket) {
			c.errorf(path+".bucket", "%q is not a valid bucket name (3-63 lowercase letters, digits, '.' and '-')", s3.Bucket)
		}
		if s3.Endpoint != "" {
			c.httpURL(path+".endpoint", s3.Endpoint, false)
		}
		if strings.HasPrefix(s3.Prefix, "/") {
			c.errorf(path+".prefix", "%q must not start with '/'", s3.Prefix)
		}
		for _, env := range []struct{ name, v string }{
			{"accessKeyIDEnv", s3.AccessKeyIDEnv}, {"secretAccessKeyEnv", s3.SecretAccessKeyEnv},
		} {
			if env.v != "" && !isEnvName(env.v) {
				c.errorf(path+"."+env.name, "%q is not a valid environment variable name", env.v)
			}
		}
		c.absPath(path+".credentialsFile", s3.CredentialsFile)
	}
}

func isBucketName(s string) bool {
	if len(s) < 3 || len(s) > 63 || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; !('a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '.' || b == '-') {
			return false
		}
	}
	return true
}

// normalize writes defaults into a spec that validated cleanly, so that
// equal meaning gives equal content hashes. Only Certificate has defaults.
func normalize(spec any) {
	s, ok := spec.(*CertificateSpec)
	if !ok {
		return
	}
	if s.Duration == "" {
		s.Duration = "2160h"
	}
	k := &s.PrivateKey
	if k.Algorithm == "" {
		k.Algorithm = AlgorithmECDSA
	}
	if k.Size == 0 {
		switch k.Algorithm {
		case AlgorithmECDSA:
			k.Size = 256
		case AlgorithmRSA:
			k.Size = 2048
		}
	}
	if k.RotationPolicy == "" {
		k.RotationPolicy = RotationAlways
	}
	for i, u := range s.Usages {
		s.Usages[i] = canonicalUsage(u)
	}
}

package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/challenge/dnspersist01"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/certops/certops/failure"
	"github.com/certops/certops/issuer/acmetest"
	"github.com/certops/certops/spec"
)

// pebbleIssuerDomainName is the issuer domain name Pebble offers in its
// dns-persist-01 challenges (its default caaIdentities).
const pebbleIssuerDomainName = "pebble.letsencrypt.org"

// persistResolver makes lego's dns-persist-01 lookups ask the DNS server
// at addr until the test ends. In production they go to the system
// resolvers (lego's process-wide dnspersist01.DefaultClient); the test
// names exist only in challtestsrv.
func persistResolver(t *testing.T, addr string) {
	old := dnspersist01.DefaultClient()
	dnspersist01.SetDefaultClient(dnspersist01.NewClient(&dnspersist01.Options{RecursiveNameservers: []string{addr}}))
	t.Cleanup(func() { dnspersist01.SetDefaultClient(old) })
}

func persistChallenge(persistUntil string) spec.ACMEChallenge {
	return spec.ACMEChallenge{DNSPersist01: &spec.DNSPersist01Challenge{
		IssuerDomainName: pebbleIssuerDomainName, PersistUntil: persistUntil}}
}

// accountOf is the account URL the issuer logged when it set the
// account up.
func (e *acmeEnv) accountOf(t *testing.T, issuer string) string {
	t.Helper()
	m := regexp.MustCompile(`issuer=` + issuer + ` account=(https://\S+)`).FindStringSubmatch(e.logs.String())
	if m == nil {
		t.Fatalf("no account URL logged for issuer %s:\n%s", issuer, e.logs)
	}
	return m[1]
}

func (e *acmeEnv) newOrders() float64 {
	return testutil.ToFloat64(e.opts().Metrics.requests.WithLabelValues("newOrder", "201"))
}

// dns-persist-01 against Pebble, the reconciler resolving through
// Pebble's own DNS: without the record, or with a record naming another
// account, the order is refused before the CA is asked, with the exact
// record to create (the wildcard policy included, since *.NAME is
// ordered); the account setup logged that record; once the record is in
// DNS, Pebble validates it and issues for NAME and *.NAME. An issuer
// domain name the CA does not offer fails with lego's message.
func TestACMEDNSPersist01(t *testing.T) {
	e := newACMEEnv(t, acmetest.Options{})
	persistResolver(t, e.pebble.DNS.Addr)
	e.r.Sync([]*spec.Object{e.issuerObject("pebble", persistChallenge(""), "")})
	o := e.orderer(t, "pebble")
	c := acmeSpec("persist.certops.test", "persist.certops.test", "*.persist.certops.test")
	const fqdn = "_validation-persist.persist.certops.test."
	ctx := t.Context()

	// No record: refused, naming the record; Pebble saw no order.
	_, err := o.Order(ctx, Order{Certificate: "persist", Agent: "web-01", Spec: c, CSR: csrFor(t, c)})
	account := e.accountOf(t, "pebble")
	value := fmt.Sprintf("%s; accounturi=%s; policy=wildcard", pebbleIssuerDomainName, account)
	want := fmt.Sprintf("%s TXT %q", fqdn, value)
	if err == nil || !strings.Contains(err.Error(), "create once: "+want) {
		t.Fatalf("Order without the record: %v\nwant an error naming %s", err, want)
	}
	t.Logf("without the record: %v", err)
	if n := e.newOrders(); n != 0 {
		t.Errorf("%v orders reached Pebble; a missing record must stop the order before the CA", n)
	}
	// The setup logged what to create for plain and wildcard names.
	plain := fmt.Sprintf("%s; accounturi=%s", pebbleIssuerDomainName, account)
	for _, kv := range []string{fmt.Sprintf("value=%q", plain), fmt.Sprintf("wildcard_value=%q", value)} {
		if !strings.Contains(e.logs.String(), kv) {
			t.Errorf("logs lack %s:\n%s", kv, e.logs)
		}
	}

	// A record for another account, and one without the wildcard policy,
	// do not authorize this account for *.persist.certops.test.
	for _, other := range []string{
		fmt.Sprintf("%s; accounturi=https://127.0.0.1:1/my-account/999; policy=wildcard", pebbleIssuerDomainName),
		plain,
	} {
		if err := e.pebble.SetTXT(fqdn, other); err != nil {
			t.Fatal(err)
		}
		_, err = o.Order(ctx, Order{Certificate: "persist", Agent: "web-01", Spec: c, CSR: csrFor(t, c)})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Order with the record %q: %v\nwant an error naming %s", other, err, want)
		}
		if err := e.pebble.ClearTXT(fqdn); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.newOrders(); n != 0 {
		t.Errorf("%v orders reached Pebble with unusable records", n)
	}

	// The record, written with other spacing and case (RFC 8659 allows
	// both): Pebble validates it, for the name and its wildcard.
	if err := e.pebble.SetTXT(fqdn, fmt.Sprintf("%s;accounturi=%s ;  Policy=WILDCARD", pebbleIssuerDomainName, account)); err != nil {
		t.Fatal(err)
	}
	res, err := o.Order(ctx, Order{Certificate: "persist", Agent: "web-01", Spec: c, CSR: csrFor(t, c)})
	if err != nil {
		t.Fatalf("Order with the record: %v\nlogs:\n%s", err, e.logs)
	}
	verifyIssued(t, e.pebble, res.Issued, "persist.certops.test", "www.persist.certops.test")
	if n := e.newOrders(); n != 1 {
		t.Errorf("%v orders reached Pebble, want 1", n)
	}

	// An issuer domain name Pebble does not offer: lego refuses to answer.
	e.r.Sync([]*spec.Object{e.issuerObject("other-ca", spec.ACMEChallenge{DNSPersist01: &spec.DNSPersist01Challenge{
		IssuerDomainName: "letsencrypt.org"}}, "")})
	other := e.orderer(t, "other-ca")
	c2 := acmeSpec("elsewhere.certops.test")
	// The record exists (for this account), so certops' check passes.
	if _, err := other.Order(ctx, Order{Spec: c2, CSR: csrFor(t, c2)}); err == nil {
		t.Fatal("Order with no record at all succeeded")
	}
	if err := e.pebble.SetTXT("_validation-persist.elsewhere.certops.test.",
		"letsencrypt.org; accounturi="+e.accountOf(t, "other-ca")); err != nil {
		t.Fatal(err)
	}
	_, err = other.Order(ctx, Order{Spec: c2, CSR: csrFor(t, c2)})
	var oe *OrderError
	if !errors.As(err, &oe) || !strings.Contains(err.Error(), `provided issuer-domain-name "letsencrypt.org" not offered by the challenge`) {
		t.Fatalf("Order naming an issuer domain name Pebble does not offer: %v", err)
	}
	t.Logf("issuer domain name not offered: %v", err)
}

// The CA sees other DNS than the reconciler (split horizon, a stale
// cache): the reconciler's resolver has the record, Pebble's DNS a record
// naming another account. The order reaches Pebble, which refuses; the
// error carries Pebble's problem and the record expected. With the record
// in Pebble's DNS as well, persistUntil included, Pebble issues.
func TestACMEDNSPersist01CADisagrees(t *testing.T) {
	e := newACMEEnv(t, acmetest.Options{})
	reconcilerDNS := acmetest.StartDNS(t)
	persistResolver(t, reconcilerDNS.Addr)
	until := time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)
	e.r.Sync([]*spec.Object{e.issuerObject("pebble", persistChallenge(until.Format(time.RFC3339)), "")})
	o := e.orderer(t, "pebble")
	c := acmeSpec("split.certops.test")
	const fqdn = "_validation-persist.split.certops.test."
	ctx := t.Context()

	// Set the account up (the order is refused: no record yet).
	if _, err := o.Order(ctx, Order{Spec: c, CSR: csrFor(t, c)}); err == nil {
		t.Fatal("Order without any record succeeded")
	}
	account := e.accountOf(t, "pebble")
	value := fmt.Sprintf("%s; accounturi=%s; persistUntil=%d", pebbleIssuerDomainName, account, until.Unix())
	if err := reconcilerDNS.SetTXT(fqdn, value); err != nil {
		t.Fatal(err)
	}
	if err := e.pebble.SetTXT(fqdn, pebbleIssuerDomainName+"; accounturi=https://127.0.0.1:1/my-account/999"); err != nil {
		t.Fatal(err)
	}
	_, err := o.Order(ctx, Order{Spec: c, CSR: csrFor(t, c)})
	var oe *OrderError
	if !errors.As(err, &oe) {
		t.Fatalf("Order: %v, want the CA's refusal as an OrderError", err)
	}
	for _, want := range []string{
		"urn:ietf:params:acme:error:unauthorized",
		"accounturi mismatch",
		fmt.Sprintf("dns-persist-01 expects the TXT record(s) %s TXT %q", fqdn, value),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Order error %q lacks %q", err, want)
		}
	}
	if n := e.newOrders(); n != 1 {
		t.Errorf("%v orders reached Pebble, want 1", n)
	}
	t.Logf("refused by the CA: %v", err)

	if err := e.pebble.ClearTXT(fqdn); err != nil {
		t.Fatal(err)
	}
	if err := e.pebble.SetTXT(fqdn, value); err != nil {
		t.Fatal(err)
	}
	res, err := o.Order(ctx, Order{Spec: c, CSR: csrFor(t, c)})
	if err != nil {
		t.Fatalf("Order with the record in both views: %v", err)
	}
	verifyIssued(t, e.pebble, res.Issued, "split.certops.test")
}

// Refusals that need no DNS: IP addresses (before any network call) and a
// persistUntil that has passed (once the account is known, before the CA
// is asked for an order).
func TestACMEDNSPersist01Refusals(t *testing.T) {
	e := newACMEEnv(t, acmetest.Options{})
	persistResolver(t, e.pebble.DNS.Addr)
	e.r.Sync([]*spec.Object{
		e.issuerObject("pebble", persistChallenge(""), ""),
		e.issuerObject("expired", persistChallenge("2020-01-01T00:00:00Z"), ""),
	})

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "ip.certops.test"}, DNSNames: []string{"ip.certops.test"},
		IPAddresses: []net.IP{net.IPv4(192, 0, 2, 7)}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	ipSpec := acmeSpec("ip.certops.test")
	ipSpec.IPAddresses = []string{"192.0.2.7"}
	_, err = e.orderer(t, "pebble").Order(t.Context(), Order{Spec: ipSpec, CSR: csr})
	wantKind(t, err, failure.Invalid, "dns-persist-01 validates DNS names only, not the IP address 192.0.2.7")

	c := acmeSpec("late.certops.test")
	_, err = e.orderer(t, "expired").Order(t.Context(), Order{Spec: c, CSR: csrFor(t, c)})
	if err == nil || !strings.Contains(err.Error(), "persistUntil 2020-01-01T00:00:00Z has passed") {
		t.Fatalf("Order with a past persistUntil: %v", err)
	}
	if n := e.newOrders(); n != 0 {
		t.Errorf("%v orders reached Pebble", n)
	}
}

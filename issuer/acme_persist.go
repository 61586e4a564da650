package issuer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/acme/api"
	"github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/challenge/dnspersist01"

	"github.com/certops/certops/spec"
)

// ---- dns-persist-01 ----
//
// dns-persist-01 (draft-ietf-acme-dns-persist) is answered by a TXT record
// the operator creates once per DNS name and keeps:
//
//	_validation-persist.NAME. TXT "ISSUER-DOMAIN-NAME; accounturi=ACCOUNT-URL[; policy=wildcard][; persistUntil=UNIX-SECONDS]"
//
// lego's solver (SolverManager.SetDNSPersist01, experimental) looks the
// record up and asks the CA to validate. When it finds no matching record
// it hands the record to its built-in "manual" provider, which prints it on
// standard output and waits for Enter on standard input — nothing a server
// can do. So before each order, certops runs lego's own lookup and matcher
// for every name (dnsPersist.check) and refuses the order, naming the
// records to create, while one is missing; the CA is not contacted then.

// dnsPersist is an issuer's dns-persist-01 configuration.
type dnsPersist struct {
	issuerDomainName string
	persistUntil     time.Time // zero: the records carry no persistUntil
}

func newDNSPersist(d *spec.DNSPersist01Challenge) *dnsPersist {
	return &dnsPersist{issuerDomainName: d.IssuerDomainName, persistUntil: d.PersistUntilTime()}
}

// options configure lego's dns-persist-01 challenge, the real solver's and
// check's alike: the issuer domain name the records name (it must be one
// the CA offers), persistUntil when set, and no propagation polling — the
// record is not new, check has just found it through the same resolvers.
func (p *dnsPersist) options() []dnspersist01.ChallengeOption {
	opts := []dnspersist01.ChallengeOption{
		dnspersist01.WithIssuerDomainName(p.issuerDomainName),
		dnspersist01.PropagationWait(0, true),
	}
	if !p.persistUntil.IsZero() {
		opts = append(opts, dnspersist01.WithPersistUntil(p.persistUntil))
	}
	return opts
}

// persistRecord is one TXT record dns-persist-01 needs.
type persistRecord struct {
	FQDN, Value string
}

// String is the record in zone-file form.
func (r persistRecord) String() string { return fmt.Sprintf("%s TXT %q", r.FQDN, r.Value) }

// record is the record that lets account obtain certificates for domain
// (and, with wildcard, for *.domain too), as lego builds it.
func (p *dnsPersist) record(domain, account string, wildcard bool) (persistRecord, error) {
	info, err := dnspersist01.GetChallengeInfo(acme.Authorization{
		Identifier: acme.Identifier{Type: "dns", Value: domain}, Wildcard: wildcard,
	}, p.issuerDomainName, account, p.persistUntil)
	if err != nil {
		return persistRecord{}, err
	}
	return persistRecord{FQDN: info.FQDN, Value: info.Value}, nil
}

// logRecords tells the operator, once the account is known, which record
// each certified name needs.
func (p *dnsPersist) logRecords(logger *slog.Logger, account string) {
	plain, err := p.record("NAME", account, false)
	if err != nil {
		logger.Error("dns-persist-01: cannot build the TXT record", "account", account, "err", err)
		return
	}
	wildcard, _ := p.record("NAME", account, true)
	logger.Info("dns-persist-01: create once, for each DNS NAME this issuer certifies, a TXT record at "+
		"_validation-persist.NAME. with the value below (wildcard_value for *.NAME, which also serves NAME)",
		"account", account, "value", plain.Value, "wildcard_value", wildcard.Value)
}

// persistDomain is one identifier to validate: the DNS name without a
// leading "*.", and whether a wildcard of it is asked for.
type persistDomain struct {
	name     string
	wildcard bool
}

// domains are the order's DNS names, one per record: *.example.com and
// example.com share _validation-persist.example.com, whose record then
// needs the wildcard policy (which serves example.com as well). IP
// addresses are refused: dns-persist-01 validates DNS names only.
func (p *dnsPersist) domains(names []string) ([]persistDomain, error) {
	var out []persistDomain
	index := map[string]int{}
	for _, n := range names {
		if _, err := netip.ParseAddr(n); err == nil {
			return nil, fmt.Errorf("dns-persist-01 validates DNS names only, not the IP address %s", n)
		}
		name, wildcard := strings.CutPrefix(n, "*.")
		if i, ok := index[name]; ok {
			out[i].wildcard = out[i].wildcard || wildcard
			continue
		}
		index[name] = len(out)
		out = append(out, persistDomain{name: name, wildcard: wildcard})
	}
	return out, nil
}

// records are the records the CSR's names need.
func (p *dnsPersist) records(names []string, account string) ([]persistRecord, error) {
	domains, err := p.domains(names)
	if err != nil {
		return nil, err
	}
	out := make([]persistRecord, 0, len(domains))
	for _, d := range domains {
		r, err := p.record(d.name, account, d.wildcard)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// check returns nil when DNS holds a matching record for every name of
// the CSR, else an error naming the records to create. A persistUntil in
// the past fails at once: the CA accepts no record carrying it.
func (p *dnsPersist) check(ctx context.Context, csr []string, account string, now time.Time) error {
	if !p.persistUntil.IsZero() && !now.Before(p.persistUntil) {
		return fmt.Errorf("dns-persist-01: persistUntil %s has passed, so the CA accepts no record carrying it; "+
			"set a later spec.acme.challenge.dnsPersist01.persistUntil and update the records", p.persistUntil.Format(time.RFC3339))
	}
	domains, err := p.domains(csr)
	if err != nil {
		return err
	}
	var missing []string
	for _, d := range domains {
		err := p.find(ctx, d, account)
		var m *missingRecord
		switch {
		case errors.As(err, &m):
			missing = append(missing, m.String())
		case err != nil:
			return fmt.Errorf("dns-persist-01: look up _validation-persist.%s: %w", d.name, err)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("dns-persist-01: DNS lacks the TXT record(s) that let ACME account %s obtain these names; create once: %s",
			account, strings.Join(missing, "; "))
	}
	return nil
}

// find runs lego's dns-persist-01 solver for d against a stand-in
// authorization offering this account and issuer domain name: it looks
// the record up and matches it exactly as the real solver will. Its
// provider reports a missing record instead of prompting for it, and its
// validation step, reached when the record matches, does not contact the
// CA.
func (p *dnsPersist) find(ctx context.Context, d persistDomain, account string) error {
	found := func(context.Context, *api.Core, string, acme.Challenge) error { return nil }
	chlg, err := dnspersist01.NewChallenge(nil, found, refuseToPersist{}, p.options()...)
	if err != nil {
		return err
	}
	return chlg.Solve(ctx, acme.Authorization{
		Identifier: acme.Identifier{Type: "dns", Value: d.name},
		Wildcard:   d.wildcard,
		Challenges: []acme.Challenge{{Type: string(challenge.DNSPersist01), AccountURI: account,
			IssuerDomainNames: []string{p.issuerDomainName}}},
	})
}

// missingRecord is the record lego would have asked the operator to create.
type missingRecord struct{ persistRecord }

func (m *missingRecord) Error() string { return "missing TXT record " + m.String() }

// refuseToPersist is the provider of find: certops never creates the record.
type refuseToPersist struct{}

func (refuseToPersist) Persist(_ context.Context, fqdn, value string) error {
	return &missingRecord{persistRecord{FQDN: fqdn, Value: value}}
}

func (refuseToPersist) Timeout() (timeout, interval time.Duration) { return time.Minute, 0 }

package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit/storekit"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newStore opens a store on a fresh migrated database.
func newStore(t testing.TB) *store.Store {
	t.Helper()
	return openStore(t, pgtest.DB(t))
}

func openStore(t testing.TB, url string) *store.Store {
	t.Helper()
	return storekit.OpenURL(t, url)
}

// desiredOf builds a desired state from objects.
func desiredOf(objs ...*spec.Object) map[spec.Key]*spec.Object { return storekit.Desired(objs...) }

// converge plans desired against the stored hashes and applies the plan.
func converge(t testing.TB, s *store.Store, commit string, desired map[spec.Key]*spec.Object) (state.Plan, int64) {
	t.Helper()
	rev := revision(commit)
	return storekit.Apply(t, s, rev, appliedStatus(rev), desired)
}

func revision(commit string) state.Revision {
	return state.Revision{
		Ref:     "main",
		Commit:  fmt.Sprintf("%040s", commit),
		Author:  "Alice <alice@example.com>",
		Message: "change " + commit,
		Time:    time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func appliedStatus(rev state.Revision) state.Status {
	at := time.Date(2025, 1, 2, 3, 5, 0, 0, time.UTC)
	return state.Status{
		LastAppliedRevision:   rev.String(),
		LastAppliedAt:         &at,
		LastAttemptedRevision: rev.String(),
		LastAttemptedAt:       &at,
		Conditions: []state.Condition{{
			Type: state.ConditionReady, Status: "True", Reason: "Applied",
			Message: "applied " + rev.String(), LastTransitionTime: at,
		}},
	}
}

func issuer(name string) *spec.Object {
	return &spec.Object{
		Kind: spec.KindIssuer, Name: name,
		Spec:   &spec.IssuerSpec{LocalCA: &spec.LocalCAIssuer{CertFile: "/etc/ca/tls.crt", KeyFile: "/etc/ca/tls.key"}},
		Source: spec.Position{File: "issuers.yaml", Line: 1},
	}
}

func agent(name string, labels map[string]string) *spec.Object {
	return &spec.Object{
		Kind: spec.KindAgent, Name: name, Labels: labels,
		Spec:   &spec.AgentSpec{TokenSHA256: fmt.Sprintf("%064x", len(name))},
		Source: spec.Position{File: "agents.yaml", Line: 3},
	}
}

func cert(name string, labels map[string]string, commonName string) *spec.Object {
	pct := 33
	return &spec.Object{
		Kind: spec.KindCertificate, Name: name, Labels: labels,
		Spec: &spec.CertificateSpec{
			IssuerRef:             "internal-ca",
			CommonName:            commonName,
			DNSNames:              []string{commonName, "www." + commonName},
			PrivateKey:            spec.PrivateKey{Algorithm: "ECDSA", Size: 256, RotationPolicy: "Always"},
			Duration:              "2160h",
			RenewBeforePercentage: &pct,
			Deploy: &spec.Deployment{
				Agents:        []string{"web-01"},
				AgentSelector: &spec.LabelSelector{MatchLabels: map[string]string{"role": "web"}},
				Files: spec.DeployFiles{
					Cert: "/etc/ssl/" + name + "/cert.pem", Key: "/etc/ssl/" + name + "/key.pem",
					Fullchain: "/etc/ssl/" + name + "/fullchain.pem", Mode: "0600", Owner: "root", Group: "root",
				},
				Reload: []string{"nginx", "-s", "reload"},
				Verify: &spec.Verify{Address: "127.0.0.1:443", ServerName: commonName},
			},
		},
		Source: spec.Position{File: "certs/" + name + ".yaml", Line: 7},
	}
}

// fleet is n certificates and m agents, as in the performance ladder.
func fleet(certs, agents int) map[spec.Key]*spec.Object {
	m := make(map[spec.Key]*spec.Object, certs+agents+1)
	add := func(o *spec.Object) { m[o.Key()] = o }
	add(issuer("internal-ca"))
	for i := range agents {
		add(agent(fmt.Sprintf("web-%05d", i), map[string]string{"role": "web", "rack": fmt.Sprint(i % 40)}))
	}
	for i := range certs {
		name := fmt.Sprintf("svc-%05d", i)
		add(cert(name, map[string]string{"team": fmt.Sprintf("team-%d", i%50)}, name+".example.com"))
	}
	return m
}

// listAll reads every object, for before/after comparisons.
func listAll(t testing.TB, s *store.Store) []store.StoredObject {
	t.Helper()
	return listAllPaged(t, s, store.MaxPageSize)
}

// listAllPaged reads every object in pages of limit.
func listAllPaged(t testing.TB, s *store.Store, limit int) []store.StoredObject {
	t.Helper()
	var all []store.StoredObject
	q := store.ObjectQuery{Limit: limit}
	for {
		page, next, err := s.ListObjects(context.Background(), q)
		if err != nil {
			t.Fatalf("ListObjects: %v", err)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		q.After = next
	}
}

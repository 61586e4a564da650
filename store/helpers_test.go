package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newStore opens a store on a fresh migrated database.
func newStore(t testing.TB) *store.Store {
	t.Helper()
	return openStore(t, pgtest.DB(t))
}

func openStore(t testing.TB, url string) *store.Store {
	t.Helper()
	return openStoreWith(t, url, store.Options{})
}

func openStoreWith(t testing.TB, url string, opt store.Options) *store.Store {
	t.Helper()
	s, err := store.OpenWith(context.Background(), url, opt, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// desiredOf builds a desired state from objects.
func desiredOf(objs ...*spec.Object) map[spec.Key]*spec.Object {
	m := make(map[spec.Key]*spec.Object, len(objs))
	for _, o := range objs {
		m[o.Key()] = o
	}
	return m
}

// converge plans desired against the stored hashes and applies the plan.
func converge(t testing.TB, s *store.Store, commit string, desired map[spec.Key]*spec.Object) (state.Plan, int64) {
	t.Helper()
	ctx := context.Background()
	stored, err := s.StoredHashes(ctx)
	if err != nil {
		t.Fatalf("StoredHashes: %v", err)
	}
	plan := reconcile.Compute(desired, stored)
	rev := revision(commit)
	id, err := s.Apply(ctx, leader(t, s), rev, plan, appliedStatus(rev))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return plan, id
}

// leader takes the reconcile lease for s (once per store, released when the
// test ends) and returns its fence, for writes of desired state.
func leader(t testing.TB, s *store.Store) state.Fence {
	t.Helper()
	leadersMu.Lock()
	defer leadersMu.Unlock()
	if f, ok := leaders[s]; ok {
		return f
	}
	l, ok, err := s.TryLeader(context.Background())
	if err != nil || !ok {
		t.Fatalf("TryLeader = %v, %v; want leadership", ok, err)
	}
	t.Cleanup(func() {
		l.Release()
		leadersMu.Lock()
		delete(leaders, s)
		leadersMu.Unlock()
	})
	leaders[s] = l.Fence()
	return l.Fence()
}

var (
	leadersMu sync.Mutex
	leaders   = map[*store.Store]state.Fence{}
)

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

// hashesOf is the stored hashes of desired as applied.
func hashesOf(desired map[spec.Key]*spec.Object) map[spec.Key]string {
	out := make(map[spec.Key]string, len(desired))
	for k, o := range desired {
		out[k] = o.Hash()
	}
	return out
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

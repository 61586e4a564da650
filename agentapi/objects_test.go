package agentapi

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

// Objects brought from one revision to the next by with equal objects
// built from nothing out of the next revision's rows, over random series of
// revisions that add, change and delete issuers, agents (labels, tokens,
// shared tokens) and certificates (by name and by selector); and every
// entry nothing changed is shared, not copied.
func TestIncrementalObjectsEqualAFullBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for series := range 30 {
		desired := map[spec.Key]store.AssignmentObject{}
		cur := &objects{}
		for rev := int64(1); rev <= 15; rev++ {
			var written []store.AssignmentObject
			var deleted []spec.Key
			for range 1 + rng.IntN(6) {
				row := randomRow(t, rng)
				k := spec.Key{Kind: row.Kind, Name: row.Name}
				if _, ok := desired[k]; ok && rng.IntN(3) == 0 {
					delete(desired, k)
					written = slices.DeleteFunc(written, func(r store.AssignmentObject) bool { return r.Kind == k.Kind && r.Name == k.Name })
					deleted = append(deleted, k)
					continue
				}
				desired[k] = row
				deleted = slices.DeleteFunc(deleted, func(d spec.Key) bool { return d == k })
				written = append(slices.DeleteFunc(written, func(r store.AssignmentObject) bool { return r.Kind == k.Kind && r.Name == k.Name }), row)
			}
			next, _ := cur.with(rev, written, deleted, nil)
			full, _ := (&objects{}).with(rev, slices.Collect(maps.Values(desired)), nil, nil)
			if diff := cmp.Diff(view(full), view(next), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("series %d, revision %d: incremental differs from a full build (-full +incremental):\n%s", series, rev, diff)
			}
			for name, c := range next.certs {
				if old := cur.certs[name]; old != nil && !writes(written, spec.KindCertificate, name) && !agentsChanged(written, deleted) && old != c {
					t.Fatalf("series %d, revision %d: certificate %s was not changed but its entry was copied", series, rev, name)
				}
			}
			cur = next
		}
	}
}

func writes(rows []store.AssignmentObject, kind spec.Kind, name string) bool {
	return slices.ContainsFunc(rows, func(r store.AssignmentObject) bool { return r.Kind == kind && r.Name == name })
}

func agentsChanged(written []store.AssignmentObject, deleted []spec.Key) bool {
	return slices.ContainsFunc(written, func(r store.AssignmentObject) bool { return r.Kind == spec.KindAgent }) ||
		slices.ContainsFunc(deleted, func(k spec.Key) bool { return k.Kind == spec.KindAgent })
}

// randomRow is an Issuer, Agent or Certificate among a few names, so that
// series add, change and delete the same objects.
func randomRow(t *testing.T, rng *rand.Rand) store.AssignmentObject {
	t.Helper()
	roles := []string{"web", "db", "cache"}
	var kind spec.Kind
	var name string
	var labels map[string]string
	var sp any
	switch rng.IntN(3) {
	case 0:
		kind, name = spec.KindIssuer, fmt.Sprintf("ca-%d", rng.IntN(2))
		sp = &spec.IssuerSpec{LocalCA: &spec.LocalCAIssuer{CertFile: "/ca/" + name + ".crt", KeyFile: fmt.Sprintf("/ca/%d.key", rng.IntN(3))}}
	case 1:
		kind, name = spec.KindAgent, fmt.Sprintf("agent-%d", rng.IntN(6))
		labels = map[string]string{"role": roles[rng.IntN(len(roles))]}
		sp = &spec.AgentSpec{TokenSHA256: fmt.Sprintf("%064x", rng.IntN(8))} // some shared
	default:
		kind, name = spec.KindCertificate, fmt.Sprintf("cert-%d", rng.IntN(8))
		d := &spec.Deployment{Files: spec.DeployFiles{Cert: "/etc/ssl/" + name + ".pem", Key: "/etc/ssl/" + name + ".key"}}
		if rng.IntN(2) == 0 {
			d.Agents = []string{fmt.Sprintf("agent-%d", rng.IntN(6)), fmt.Sprintf("agent-%d", rng.IntN(6))}
		}
		if rng.IntN(2) == 0 {
			d.AgentSelector = &spec.LabelSelector{MatchLabels: map[string]string{"role": roles[rng.IntN(len(roles))]}}
		}
		sp = &spec.CertificateSpec{IssuerRef: "ca-0", CommonName: name + ".example.com", Duration: fmt.Sprintf("%dh", 24*(1+rng.IntN(3))),
			PrivateKey: spec.PrivateKey{Algorithm: "ECDSA", Size: 256}, Deploy: d}
	}
	raw, err := json.Marshal(sp)
	if err != nil {
		t.Fatal(err)
	}
	return store.AssignmentObject{Kind: kind, Name: name, Labels: labels, Spec: raw}
}

// objectsView is what objects hold, as plain values to compare.
type objectsView struct {
	Revision int64
	Tokens   map[string]string
	Agents   map[string][]string // agent → its certificates
	Labels   map[string]map[string]string
	Certs    map[string][]string // certificate → its targets
	Hashes   map[string]string
	Issuers  []string
}

func view(o *objects) objectsView {
	v := objectsView{Revision: o.revision, Tokens: map[string]string{}, Agents: map[string][]string{},
		Labels: map[string]map[string]string{}, Certs: map[string][]string{}, Hashes: map[string]string{}}
	for sum, name := range o.tokens {
		v.Tokens[fmt.Sprintf("%x", sum)] = name
	}
	for name, a := range o.agents {
		v.Agents[name], v.Labels[name] = a.certs, a.labels
	}
	for name, c := range o.certs {
		v.Certs[name], v.Hashes[name] = c.targets, c.specHash
	}
	for _, is := range o.issuerList() {
		v.Issuers = append(v.Issuers, is.Name+" "+is.Issuer().LocalCA.KeyFile)
	}
	return v
}

// Rows whose object the process already loaded (same key and hash) take
// that object; rows with other content are decoded.
func TestObjectsShareLoadedObjects(t *testing.T) {
	loaded := &spec.Object{Kind: spec.KindCertificate, Name: "shop", Spec: &spec.CertificateSpec{IssuerRef: "ca",
		CommonName: "shop.example.com", Duration: "24h", PrivateKey: spec.PrivateKey{Algorithm: "ECDSA", Size: 256}}}
	var latest spec.Latest
	latest.Set(spec.State{Objects: map[spec.Key]*spec.Object{loaded.Key(): loaded}})
	raw, err := json.Marshal(loaded.Spec)
	if err != nil {
		t.Fatal(err)
	}
	rows := []store.AssignmentObject{{Kind: spec.KindCertificate, Name: "shop", Spec: raw, Hash: loaded.Hash()}}
	o, errs := (&objects{}).with(1, rows, nil, latest.Current())
	if len(errs) != 0 || o.certs["shop"].spec != loaded.Spec {
		t.Errorf("with the loaded hash: errors %v, spec %p; want the loaded spec %p", errs, o.certs["shop"].spec, loaded.Spec)
	}
	rows[0].Hash = "stale"
	o, errs = (&objects{}).with(1, rows, nil, latest.Current())
	if len(errs) != 0 || o.certs["shop"].spec == loaded.Spec || o.certs["shop"].spec.CommonName != "shop.example.com" {
		t.Errorf("with another hash: errors %v, spec %+v; want a decoded copy", errs, o.certs["shop"].spec)
	}
}

// snapshotStoreFake has one revision with one agent, and no deployments.
type snapshotStoreFake struct{}

func (snapshotStoreFake) AgentChanges(context.Context) (int64, int64, error) { return 1, 0, nil }
func (snapshotStoreFake) AssignmentObjects(context.Context, int64, func(spec.Key, string) bool) (store.AssignmentChanges, error) {
	raw := json.RawMessage(`{"tokenSHA256":"` + strings.Repeat("ab", 32) + `"}`)
	return store.AssignmentChanges{Revision: 1, Objects: []store.AssignmentObject{{Kind: spec.KindAgent, Name: "web-01", Spec: raw}}}, nil
}
func (snapshotStoreFake) DeploymentsSince(context.Context, int64) ([]state.Deployment, int64, error) {
	return nil, 0, nil
}
func (snapshotStoreFake) ACMEChallenges(context.Context, time.Time) ([]store.ACMEChallenge, error) {
	return nil, nil
}

// Loaded is closed by the first load, not before.
func TestSnapshotLoaded(t *testing.T) {
	s := NewSnapshot(snapshotStoreFake{}, nil, Config{}, nil)
	select {
	case <-s.Loaded():
		t.Fatal("Loaded before any load")
	default:
	}
	if err := s.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Loaded():
	default:
		t.Fatal("Loaded still open after the first load")
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready after the first load: %v", err)
	}
}

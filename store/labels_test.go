package store_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/spec"
)

func TestObjectLabels(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	converge(t, s, "1", desiredOf(issuer("internal-ca"),
		agent("web-01", map[string]string{"team": "pay"}),
		cert("a", map[string]string{"team": "shop"}, "a.example.com"),
		cert("b", nil, "b.example.com")))

	got, err := s.ObjectLabels(ctx, spec.KindCertificate, []string{"a", "b", "missing", "web-01"})
	if err != nil {
		t.Fatalf("ObjectLabels: %v", err)
	}
	// An object without labels is there with none; a name without an
	// object of the kind is absent.
	want := map[string]map[string]string{"a": {"team": "shop"}, "b": nil}
	if diff := cmp.Diff(got, want, cmp.Comparer(func(x, y map[string]string) bool { return len(x) == 0 && len(y) == 0 || cmp.Equal(x, y) })); diff != "" {
		t.Errorf("ObjectLabels(Certificate) (-got +want):\n%s", diff)
	}
	if _, ok := got["b"]; !ok {
		t.Errorf("ObjectLabels(Certificate) lacks b, which exists without labels")
	}
	agents, err := s.ObjectLabels(ctx, spec.KindAgent, []string{"web-01"})
	if err != nil || !cmp.Equal(agents, map[string]map[string]string{"web-01": {"team": "pay"}}) {
		t.Errorf("ObjectLabels(Agent) = %v, %v; want web-01 with team=pay", agents, err)
	}
	if none, err := s.ObjectLabels(ctx, spec.KindAgent, nil); err != nil || len(none) != 0 {
		t.Errorf("ObjectLabels(no names) = %v, %v; want nothing", none, err)
	}
}

package dashboard_test

import (
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/testkit/storekit"
)

// A suspended certificate, a suspended agent and the frozen deployment on
// it are marked on their pages.
func TestSuspendedIsShown(t *testing.T) {
	st := storekit.Open(t)
	frozen := agentObj("web-01", "web")
	frozen.Agent().Suspend = true
	paused := certObj("shop", "shop", 1, toAgents("web-01"))
	paused.Certificate().Suspend = true
	desired := storekit.Desired(
		&spec.Object{Kind: spec.KindIssuer, Name: "internal-ca", Spec: &spec.IssuerSpec{LocalCA: &spec.LocalCAIssuer{}}},
		frozen, paused)
	rev := state.Revision{Ref: "main", Commit: strings.Repeat("4", 40), Time: time.Now()}
	storekit.Apply(t, st, rev, state.Status{LastAppliedRevision: rev.String()}, desired)
	srv := serve(t, st, "", nil)
	c := noRedirect()
	for path, want := range map[string]string{
		"/ui/certificates/shop": `agent suspended`,
		"/ui/agents/web-01":     `id="suspended">Suspended<`,
	} {
		_, body := get(t, c, srv.URL+path, "")
		if !strings.Contains(body, want) {
			t.Errorf("GET %s lacks %s", path, want)
		}
	}
	if _, body := get(t, c, srv.URL+"/ui/certificates/shop", ""); !strings.Contains(body, `badge suspended">Suspended<`) {
		t.Error("the suspended certificate's page does not say Suspended")
	}
}

package agent

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/failure"
)

// An agent started with another agent's token (the server answers for
// web-01, the agent is --name db-01) acts on nothing: no issue request, no
// report, no heartbeat, no file written; the pass fails with a clear error,
// and Run stops with it instead of retrying.
func TestWrongNameWithAnotherAgentsTokenRefusesToAct(t *testing.T) {
	e := newEnv(t)
	good := e.newAgent()
	e.sync(good) // web-01's files are installed
	before := e.fileSet()
	_, _, requestsBefore, _ := e.srv.snapshot()

	e.cfg.Name = "db-01"
	e.cfg.StateDir = t.TempDir()                                             // a fresh host: nothing cached that would vouch for it
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Current = nil }) // would make it issue and install
	a := e.newAgent()
	err := a.SyncOnce(t.Context())
	if !errors.Is(err, errWrongAgent) || failure.KindOf(err) != failure.Forbidden {
		t.Fatalf("SyncOnce with another agent's token: %v, want errWrongAgent (forbidden)", err)
	}
	for _, want := range []string{`"web-01"`, `"db-01"`, "--name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := a.Run(ctx); !errors.Is(err, errWrongAgent) || ctx.Err() != nil {
		t.Fatalf("Run with another agent's token: %v (ctx %v), want errWrongAgent at once", err, ctx.Err())
	}

	if got := e.fileSet(); !maps.Equal(got, before) {
		t.Error("web-01's files changed")
	}
	_, _, requests, _ := e.srv.snapshot()
	for _, r := range requests[len(requestsBefore):] {
		if !strings.HasPrefix(r, "GET "+agentproto.PathAssignments) {
			t.Errorf("request %q after the server named another agent", r)
		}
	}
}

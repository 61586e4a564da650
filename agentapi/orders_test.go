package agentapi_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/agentapi"
	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/alert"
	"github.com/certops/certops/issuer"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/testkit"
)

// stuckOrderer is an ACME issuer whose orders never complete: each waits
// for its context to end.
type stuckOrderer struct{ orders atomic.Int32 }

func (o *stuckOrderer) Signer(string) (issuer.Signer, error) { return o, nil }
func (o *stuckOrderer) Type() string                         { return issuer.TypeACME }
func (o *stuckOrderer) Sign(context.Context, *spec.CertificateSpec, *x509.CertificateRequest, time.Time) (*agentproto.Issued, error) {
	return nil, errors.New("orders only")
}
func (o *stuckOrderer) CertificatesPerNameSetPerWeek() int { return 0 }
func (o *stuckOrderer) Order(ctx context.Context, _ issuer.Order) (*issuer.OrderResult, error) {
	o.orders.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

// ordersEnv is an agent API whose issuer is a stuckOrderer.
func ordersEnv(t *testing.T, cfg agentapi.Config) (*env, *api, *httptest.Server, *stuckOrderer) {
	t.Helper()
	e := newEnv(t, envOptions{}, fleetObjs()...)
	o := &stuckOrderer{}
	cfg.Now = e.clock.Now
	srv := newAPI(apiDeps{store: e.st, signers: o}, cfg, testLogger(t))
	if err := srv.snapshot.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.handler)
	t.Cleanup(hs.Close)
	return e, srv, hs, o
}

func issueVia(t *testing.T, e *env, base, agent, cert string) int {
	t.Helper()
	url := e.http.URL
	e.http.URL = base
	defer func() { e.http.URL = url }()
	return e.issue(agent, cert).status
}

// An ACME order that runs into OrderTimeout is recorded as a failure with
// a backoff, although its own context has ended: the agent must not order
// again at once.
func TestACMEOrderTimeoutIsRecorded(t *testing.T) {
	e, srv, hs, o := ordersEnv(t, agentapi.Config{OrderTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	if got := issueVia(t, e, hs.URL, "web-01", "shop"); got != http.StatusAccepted {
		t.Fatalf("issue: got %d, want 202", got)
	}
	var ds []state.Deployment
	testkit.WaitFor(t, 10*time.Second, "the timed-out order to be recorded", func() bool {
		var err error
		if ds, err = e.st.CertificateDeployments(context.Background(), "shop"); err != nil {
			t.Fatal(err)
		}
		return len(ds) == 1 && ds[0].Failures == 1
	})
	if !ds[0].NotBefore.After(e.clock.Now()) || ds[0].LastError == "" {
		t.Errorf("timed-out order: got not_before %s last_error %q, want a backoff and the error", ds[0].NotBefore, ds[0].LastError)
	}
	if n := o.orders.Load(); n != 1 {
		t.Errorf("orders: got %d, want 1", n)
	}
}

// After Run ended (shutdown) an issue request starts no order and leaves
// no claim behind; an order cut short by shutdown is not recorded as a
// failure of the CA.
func TestNoACMEOrderAfterShutdown(t *testing.T) {
	e, srv, hs, o := ordersEnv(t, agentapi.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	if got := issueVia(t, e, hs.URL, "web-01", "shop"); got != http.StatusAccepted {
		t.Fatalf("issue: got %d, want 202", got)
	}
	testkit.WaitFor(t, 10*time.Second, "the order to start", func() bool { return o.orders.Load() > 0 })
	cancel()
	<-done
	if ds, err := e.st.CertificateDeployments(context.Background(), "shop"); err != nil || len(ds) != 0 && ds[0].Failures != 0 {
		t.Errorf("an order cut short by shutdown was recorded as a failure: %+v %v", ds, err)
	}

	if got := issueVia(t, e, hs.URL, "web-01", "pool"); got != http.StatusAccepted {
		t.Fatalf("issue after shutdown: got %d, want 202", got)
	}
	if n := o.orders.Load(); n != 1 {
		t.Errorf("orders: got %d, want only the one started before shutdown", n)
	}
	conn, err := pgx.Connect(context.Background(), e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var claims int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM acme_orders").Scan(&claims); err != nil {
		t.Fatal(err)
	}
	if claims != 0 {
		t.Errorf("order claims left after shutdown: %d, want 0", claims)
	}
}

// Two agents whose Agent objects carry the same tokenSHA256 are both
// refused: the token cannot tell which of them is asking.
func TestSharedTokenAuthenticatesNoAgent(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	shared := agentObj("db-01", map[string]string{"role": "db"})
	sum := sha256.Sum256([]byte(tokenOf("web-01")))
	shared.Spec.(*spec.AgentSpec).TokenSHA256 = hex.EncodeToString(sum[:])
	e.apply(shared)
	e.refresh()
	for _, token := range []string{tokenOf("web-01"), tokenOf("db-01")} {
		if r := e.do("GET", agentproto.PathAssignments, token, nil); r.status != http.StatusUnauthorized {
			t.Errorf("token %s shared or replaced: got %d %s, want 401", token, r.status, r.body)
		}
	}
	if r := e.do("GET", agentproto.PathAssignments, tokenOf("web-02"), nil); r.status != http.StatusOK {
		t.Errorf("web-02 with its own token: got %d, want 200", r.status)
	}
}

// blockingSink holds every event until released, counting those in flight.
type blockingSink struct {
	release  chan struct{}
	inFlight atomic.Int32
	most     atomic.Int32
}

func (b *blockingSink) Event(ctx context.Context, _ alert.Alert) error {
	n := b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	for m := b.most.Load(); n > m && !b.most.CompareAndSwap(m, n); m = b.most.Load() {
	}
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return nil
}

// Failure reports announce events in the background, but a flood of them
// behind a slow notification store does not pile up goroutines.
func TestAnnouncementsAreBounded(t *testing.T) {
	e := newEnv(t, envOptions{}, fleetObjs()...)
	sink := &blockingSink{release: make(chan struct{})}
	srv := newAPI(apiDeps{store: e.st, signers: &stuckOrderer{}, events: sink},
		agentapi.Config{Now: e.clock.Now}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	testkit.WaitFor(t, 10*time.Second, "the agent API to be ready", func() bool { return srv.snapshot.Ready() == nil })
	e.http.Config.Handler = srv.handler
	for i := range 100 {
		r := e.do("POST", agentproto.PathReports, tokenOf("web-01"),
			agentproto.Report{Certificate: "shop", Result: agentproto.ResultFailed, Error: fmt.Sprint("reload failed ", i)})
		if r.status != http.StatusNoContent {
			t.Fatalf("report %d: got %d %s", i, r.status, r.body)
		}
	}
	if most := sink.most.Load(); most == 0 || most > 64 {
		t.Errorf("announcements in flight: at most %d, want between 1 and 64", most)
	}
	close(sink.release)
	cancel()
	<-done
	if n := sink.inFlight.Load(); n != 0 {
		t.Errorf("announcements still running after Run ended: %d", n)
	}
}

package webhook_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/certops/certops/testkit"
	"github.com/certops/certops/webhook"
)

// The handler reads the real clock (time.Now, time.AfterFunc) and takes no
// injected one, so these tests run in a synctest bubble: its clock is fake
// and moves only when every goroutine in the bubble is blocked. A
// time.Sleep followed by synctest.Wait therefore leaves the bubble exactly
// at the chosen instant with every timer due by then fired and finished,
// which makes "nothing has happened yet" as deterministic an assertion as
// "it has happened".

func floodHandler(t *testing.T, cfg webhook.Config) (http.Handler, *atomic.Int64, *testkit.Buffer) {
	t.Helper()
	var wakes atomic.Int64
	logs := &testkit.Buffer{}
	h, err := webhook.NewHandler(cfg, func() { wakes.Add(1) }, slog.New(slog.NewTextHandler(logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return h, &wakes, logs
}

func post(h http.Handler, body, sig string) int {
	req := httptest.NewRequest(http.MethodPost, "/hooks/generic", strings.NewReader(body))
	req.Header.Set(webhook.SignatureHeader, sig)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

// advance moves the bubble's fake clock by d and waits until every
// goroutine started by timers that fell due meanwhile has finished.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// TestValidFloodCoalesces sends 100 valid webhooks at one instant: they
// wake the reconciler once at once and once at the end of the interval
// (the trailing wake-up, so that the last push is not lost), not 100 times,
// and not earlier or more often than that.
func TestValidFloodCoalesces(t *testing.T) {
	cfg := allConfigured(t)
	cfg.MinWakeInterval = 300 * time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		h, wakes, _ := floodHandler(t, cfg)
		body := `{"ref":"refs/heads/main"}`
		sig := webhook.Sign([]byte(genericSecret), []byte(body))
		want := func(n int64, when string) {
			t.Helper()
			if got := wakes.Load(); got != n {
				t.Fatalf("wakes %s: got %d, want %d", when, got, n)
			}
		}

		for range 100 {
			if code := post(h, body, sig); code != http.StatusAccepted {
				t.Fatalf("valid webhook: got %d", code)
			}
		}
		want(1, "right after the flood")

		advance(cfg.MinWakeInterval - time.Nanosecond)
		want(1, "just before the interval ends (trailing wake-up too early)")
		advance(time.Nanosecond)
		want(2, "when the interval ends (one at once, one trailing)")

		// A push right after the trailing wake-up is within the interval
		// again: deferred to its end, not dropped and not run at once.
		post(h, body, sig)
		want(2, "after a push within the interval")
		advance(cfg.MinWakeInterval - time.Nanosecond)
		want(2, "just before the second interval ends")
		advance(time.Nanosecond)
		want(3, "when the second interval ends")

		// Nothing is left pending: a long quiet spell brings no wake-up.
		advance(10 * cfg.MinWakeInterval)
		want(3, "after a quiet spell")

		// After a quiet interval a webhook wakes at once again.
		post(h, body, sig)
		want(4, "after a push following a quiet interval")
	})
}

// TestInvalidFloodLogsBounded sends 1,000 webhooks with a bad signature:
// one warning, then, once the interval has passed, one that counts the
// suppressed ones.
func TestInvalidFloodLogsBounded(t *testing.T) {
	cfg := allConfigured(t)
	cfg.RejectLogInterval = 200 * time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		h, wakes, logs := floodHandler(t, cfg)
		invalid := func() {
			t.Helper()
			if code := post(h, "{}", "sha256=00"); code != http.StatusUnauthorized {
				t.Fatalf("invalid webhook: got %d", code)
			}
		}
		lines := func() int { return strings.Count(logs.String(), "\n") }

		for range 1000 {
			invalid()
		}
		if n := lines(); n != 1 {
			t.Fatalf("log lines after 1,000 invalid webhooks: got %d, want 1:\n%s", n, logs)
		}

		advance(cfg.RejectLogInterval - time.Nanosecond)
		invalid()
		if n := lines(); n != 1 {
			t.Fatalf("log lines just before the interval ends: got %d, want 1:\n%s", n, logs)
		}

		advance(time.Nanosecond)
		invalid()
		out := logs.String()
		if n := strings.Count(out, "\n"); n != 2 || !strings.Contains(out, "suppressed=1000") {
			t.Fatalf("after the interval: want a second line with suppressed=1000, got:\n%s", out)
		}

		// The counter restarts: the next warning after another interval
		// counts only what was left out since the second one.
		invalid()
		advance(cfg.RejectLogInterval)
		invalid()
		out = logs.String()
		if n := strings.Count(out, "\n"); n != 3 || !strings.Contains(out, "suppressed=1\n") {
			t.Fatalf("after another interval: want a third line with suppressed=1, got:\n%s", out)
		}

		if n := wakes.Load(); n != 0 {
			t.Fatalf("invalid webhooks woke the reconciler %d times", n)
		}
	})
}

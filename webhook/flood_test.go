package webhook_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certops/certops/webhook"
)

// lockedBuffer is a bytes.Buffer safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func floodHandler(t *testing.T, cfg webhook.Config) (http.Handler, *atomic.Int64, *lockedBuffer) {
	t.Helper()
	var wakes atomic.Int64
	logs := &lockedBuffer{}
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

// TestValidFloodCoalesces sends 100 valid webhooks within a second: they
// wake the reconciler once at once and once at the end of the interval
// (the trailing wake-up, so that the last push is not lost), not 100 times.
func TestValidFloodCoalesces(t *testing.T) {
	cfg := allConfigured(t)
	cfg.MinWakeInterval = 300 * time.Millisecond
	h, wakes, _ := floodHandler(t, cfg)
	body := `{"ref":"refs/heads/main"}`
	for range 100 {
		if code := post(h, body, webhook.Sign([]byte(genericSecret), []byte(body))); code != http.StatusAccepted {
			t.Fatalf("valid webhook: got %d", code)
		}
	}
	if n := wakes.Load(); n != 1 {
		t.Fatalf("wakes right after the flood: got %d, want 1", n)
	}
	time.Sleep(2 * cfg.MinWakeInterval)
	if n := wakes.Load(); n != 2 {
		t.Fatalf("wakes after the interval: got %d, want 2 (one at once, one trailing)", n)
	}
	// After a quiet interval a webhook wakes at once again.
	post(h, body, webhook.Sign([]byte(genericSecret), []byte(body)))
	if n := wakes.Load(); n != 3 {
		t.Fatalf("wakes after a quiet interval: got %d, want 3", n)
	}
}

// TestInvalidFloodLogsBounded sends 1,000 webhooks with a bad signature:
// one warning, then one that counts the suppressed ones after the interval.
func TestInvalidFloodLogsBounded(t *testing.T) {
	cfg := allConfigured(t)
	cfg.RejectLogInterval = 200 * time.Millisecond
	h, wakes, logs := floodHandler(t, cfg)
	for range 1000 {
		if code := post(h, "{}", "sha256=00"); code != http.StatusUnauthorized {
			t.Fatalf("invalid webhook: got %d", code)
		}
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Fatalf("log lines after 1,000 invalid webhooks: got %d, want 1:\n%s", n, logs)
	}
	time.Sleep(cfg.RejectLogInterval)
	post(h, "{}", "sha256=00")
	out := logs.String()
	if n := strings.Count(out, "\n"); n != 2 || !strings.Contains(out, "suppressed=999") {
		t.Fatalf("after the interval: want a second line with suppressed=999, got:\n%s", out)
	}
	if wakes.Load() != 0 {
		t.Fatalf("invalid webhooks woke the reconciler %d times", wakes.Load())
	}
}

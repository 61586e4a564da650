package gitsource

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The server's progress lines reach the log throttled, the latest one
// each time, and the last one when the fetch ends.
func TestProgressLog(t *testing.T) {
	var out strings.Builder
	p := newProgressLog(slog.New(slog.NewTextHandler(&out, nil)), "refs/heads/main", 5*time.Second)
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	p.Write([]byte("Counting objects:  10% (1/10)\rCounting obj"))
	p.Write([]byte("ects:  20% (2/10)\r"))
	now = now.Add(time.Second)
	p.Write([]byte("Counting objects:  30% (3/10)\r"))
	now = now.Add(5 * time.Second)
	p.Write([]byte("Counting objects:  90% (9/10)\r"))
	p.Write([]byte("Counting objects: 100% (10/10), done.\n"))
	p.flush()
	got := out.String()
	for _, want := range []string{"10% (1/10)", "90% (9/10)", "100% (10/10), done."} {
		if !strings.Contains(got, want) {
			t.Errorf("the log lacks %q:\n%s", want, got)
		}
	}
	for _, skipped := range []string{"20%", "30%"} {
		if strings.Contains(got, skipped) {
			t.Errorf("the log shows %q, within the interval of the previous record:\n%s", skipped, got)
		}
	}
	if p.loggedCount != 3 {
		t.Errorf("%d records, want 3", p.loggedCount)
	}
}

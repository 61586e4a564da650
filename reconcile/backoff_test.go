package reconcile

import (
	"testing"
	"time"

	"github.com/certops/certops/state"
)

func TestBackoff(t *testing.T) {
	r := New(nil, nil, nil, nil, nil, Options{Interval: time.Minute, RetryMin: time.Second, RetryMax: 10 * time.Second,
		Rand: func() float64 { return 0.5 }}) // 0.5: no jitter
	var got []time.Duration
	for range 6 {
		got = append(got, r.nextDelay(state.Outcome{Result: state.ResultTransient}))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("transient backoff: got %v, want %v", got, want)
		}
	}
	if d := r.nextDelay(state.Outcome{Result: state.ResultSuccess}); d != time.Minute {
		t.Errorf("after success: got %v, want the interval", d)
	}
	if d := r.nextDelay(state.Outcome{Result: state.ResultTransient}); d != time.Second {
		t.Errorf("a new failure after success starts over: got %v, want 1s", d)
	}
	if d := r.nextDelay(state.Outcome{Result: state.ResultStalled}); d != time.Minute {
		t.Errorf("stalled waits for the next interval: got %v", d)
	}
	// Jitter spreads the interval by ±10%.
	r.opt.Rand = func() float64 { return 0 }
	if d := r.nextDelay(state.Outcome{Result: state.ResultSuccess}); d != 54*time.Second {
		t.Errorf("jitter low end: got %v, want 54s", d)
	}
	r.opt.Rand = func() float64 { return 0.999999 }
	if d := r.nextDelay(state.Outcome{Result: state.ResultSuccess}); d < 65*time.Second || d > 66*time.Second {
		t.Errorf("jitter high end: got %v, want ~66s", d)
	}
}

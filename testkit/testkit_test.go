package testkit_test

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certops/certops/testkit"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	c := testkit.NewClock(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("Now = %v, want %v", got, t0)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			c.Advance(time.Second)
			_ = c.Now()
		})
	}
	wg.Wait()
	if got, want := c.Now(), t0.Add(10*time.Second); !got.Equal(want) {
		t.Errorf("after 10 concurrent Advance(1s): Now = %v, want %v", got, want)
	}
	if got, want := c.Advance(-time.Minute), t0.Add(-50*time.Second); !got.Equal(want) {
		t.Errorf("Advance(-1m) = %v, want %v", got, want)
	}
	c.Set(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Errorf("after Set: Now = %v, want %v", got, t0)
	}
}

// recordingTB records Fatalf instead of ending the test.
type recordingTB struct {
	testing.TB
	fatal string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
}

func TestWaitFor(t *testing.T) {
	calls := 0
	testkit.WaitFor(t, 5*time.Second, "the third call", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Errorf("cond called %d times, want 3 (until it held)", calls)
	}

	rec := &recordingTB{TB: t}
	start := time.Now()
	testkit.WaitFor(rec, 50*time.Millisecond, "nothing", func() bool { return false })
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("gave up after %v, want at least the timeout", took)
	}
	if want := "timed out after 50ms waiting for nothing"; rec.fatal != want {
		t.Errorf("failure = %q, want %q", rec.fatal, want)
	}
}

func TestListen(t *testing.T) {
	ln := testkit.Listen(t)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial the listener: %v", err)
	}
	c.Close()
}

func TestClosedAddr(t *testing.T) {
	addr := testkit.ClosedAddr(t)
	if _, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s: %v, want connection refused", addr, err)
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Errorf("listen on %s succeeded, want the port held", addr)
	}
}

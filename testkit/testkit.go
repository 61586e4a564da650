// Package testkit holds the small helpers certops' tests share: a fake
// clock, waiting for a condition, a buffer safe for concurrent use,
// loopback addresses, a TLS service serving certificate files as they are
// on disk (TLSService), finding an installed program (Program) and running
// a tool pinned in go.mod (GoTool). Import it only from tests (_test.go
// files and test-helper packages). It depends on the standard library
// only, so any package's tests can use it.
package testkit

import (
	"sync"
	"testing"
	"time"
)

// Clock is a fake time source, safe for concurrent use. Pass its Now where
// the code under test takes a clock; the test moves it with Set and Advance.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock reading now.
func NewClock(now time.Time) *Clock { return &Clock{now: now} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t (backwards too).
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// Advance moves the clock by d and returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// pollEvery is how often WaitFor checks its condition.
const pollEvery = 10 * time.Millisecond

// WaitFor calls cond until it returns true, and fails the test if that
// takes longer than timeout; what names the awaited event in the failure.
// cond runs on the test's goroutine, so it may call t.Fatal.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
			return
		}
		time.Sleep(pollEvery)
	}
}

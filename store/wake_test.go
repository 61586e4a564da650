package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/certops/certops/store"
)

// TestWakeReachesOtherReplicas: a wake-up sent through one replica's store
// arrives at a listener on another store of the same database.
func TestWakeReachesOtherReplicas(t *testing.T) {
	a := newStore(t)
	b := openStore(t, store.URL(a))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wakes := a.ListenWake(ctx)
	deadline := time.After(10 * time.Second)
	for received := false; !received; {
		// The listener may not be listening yet: notify until it hears one.
		if err := b.NotifyWake(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-wakes:
			received = true
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("no wake-up within 10s")
		}
	}
	cancel()
	select {
	case _, ok := <-wakes:
		for ok {
			_, ok = <-wakes
		}
	case <-time.After(5 * time.Second):
		t.Fatal("listener did not stop with its context")
	}
}

// TestRelayWakes: a local wake-up (a webhook) on one replica wakes the
// reconciler of another through the database, and RelayWakes returns once
// its context ends.
func TestRelayWakes(t *testing.T) {
	a := newStore(t)
	b := openStore(t, store.URL(a))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wokeA := make(chan struct{}, 1)
	local := make(chan struct{}, 1)
	done := make(chan struct{}, 2)
	go func() {
		a.RelayWakes(ctx, nil, func() {
			select {
			case wokeA <- struct{}{}:
			default:
			}
		})
		done <- struct{}{}
	}()
	go func() { b.RelayWakes(ctx, local, func() {}); done <- struct{}{} }()
	deadline := time.After(10 * time.Second)
	for received := false; !received; {
		// A may not be listening yet: poke B until A hears one.
		select {
		case local <- struct{}{}:
		default:
		}
		select {
		case <-wokeA:
			received = true
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("replica A was not woken within 10s")
		}
	}
	cancel()
	for range 2 {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("RelayWakes did not return after its context ended")
		}
	}
}

package agentapi

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/certops/certops/alert"
)

// EventSink receives one-off events worth notifying someone about.
type EventSink interface {
	Event(ctx context.Context, a alert.Alert) error
}

// maxAnnouncing bounds the announcements in flight: a flood of failure
// reports must not pile up goroutines behind a slow notification store.
const maxAnnouncing = 64

// Announcer hands events to an EventSink in the background: notifying must
// never slow an agent's request down.
type Announcer struct {
	sink EventSink // nil: events are dropped
	log  *slog.Logger

	mu       sync.Mutex
	stopped  bool
	inFlight sync.WaitGroup
	slots    chan struct{} // semaphore of the announcements in flight
}

// NewAnnouncer returns an Announcer delivering to sink; a nil sink drops
// every event.
func NewAnnouncer(sink EventSink, logger *slog.Logger) *Announcer {
	return &Announcer{sink: sink, log: orDiscard(logger), slots: make(chan struct{}, maxAnnouncing)}
}

// Announce delivers a in the background. With maxAnnouncing already in
// flight, or after Run ended, the event is dropped and logged.
func (an *Announcer) Announce(a alert.Alert) {
	if an.sink == nil {
		return
	}
	an.mu.Lock()
	defer an.mu.Unlock()
	if an.stopped {
		an.log.Warn("agent API: shutting down; event not notified", "event", a.Name, "subject", a.Subject)
		return
	}
	select {
	case an.slots <- struct{}{}:
	default:
		an.log.Warn("agent API: too many notifications in flight; event not notified", "event", a.Name, "subject", a.Subject)
		return
	}
	an.inFlight.Go(func() {
		defer func() { <-an.slots }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := an.sink.Event(ctx, a); err != nil {
			an.log.Warn("notify event", "event", a.Name, "subject", a.Subject, "err", err)
		}
	})
}

// Run waits until ctx ends, then stops taking events and waits (briefly)
// for those in flight.
func (an *Announcer) Run(ctx context.Context) error {
	<-ctx.Done()
	an.mu.Lock()
	an.stopped = true
	an.mu.Unlock()
	if !waitFor(&an.inFlight, 15*time.Second) {
		an.log.Warn("agent API: notifications still running at shutdown")
	}
	return nil
}

// waitFor waits for wg at most d and reports whether it finished.
func waitFor(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

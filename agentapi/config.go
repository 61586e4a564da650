package agentapi

import (
	"log/slog"
	"time"
)

// Config tunes the parts; zero fields take the defaults below. Each part's
// constructor reads the fields it names.
type Config struct {
	// Now is the clock (time.Now).
	Now func() time.Time
	// RefreshInterval is how often Snapshot.Run checks Postgres for changes (1s).
	RefreshInterval time.Duration
	// FlushInterval is how often last-seen, version and hostname of the
	// agents this replica heard from are written, in one batch (5s).
	FlushInterval time.Duration
	// BackoffBase and BackoffCap bound the wait after a failed or refused
	// issue: min(BackoffCap, BackoffBase·2^(failures−1)) (1m and 6h).
	BackoffBase, BackoffCap time.Duration
	// ReissueInterval is the least time between two certificates issued to
	// one agent for one certificate and spec: an issue request sooner after
	// a success is answered 429 backoff with Retry-After, unless renewal of
	// the current certificate is due (1m).
	ReissueInterval time.Duration
	// OfflineAfter is how long an agent may be silent and still count as
	// online (5m).
	OfflineAfter time.Duration
	// RenewalJitter is the largest fraction of renewBefore by which renewal
	// is moved earlier, per (certificate, agent) (0.1).
	RenewalJitter float64
	// OrderTimeout bounds an ACME order, challenges included (10m).
	OrderTimeout time.Duration
	// ChallengeTimeout is how long an http-01 challenge waits for the
	// deploying agents to confirm the file is in place (2m: agents poll
	// every 30s by default, faster while an order of theirs is pending).
	ChallengeTimeout time.Duration
	// ChallengePoll is how often those confirmations are checked (250ms).
	ChallengePoll time.Duration
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	def(&c.RefreshInterval, time.Second)
	def(&c.FlushInterval, 5*time.Second)
	def(&c.BackoffBase, time.Minute)
	def(&c.BackoffCap, 6*time.Hour)
	def(&c.ReissueInterval, time.Minute)
	def(&c.OfflineAfter, 5*time.Minute)
	def(&c.OrderTimeout, 10*time.Minute)
	def(&c.ChallengeTimeout, 2*time.Minute)
	def(&c.ChallengePoll, 250*time.Millisecond)
	if c.RenewalJitter <= 0 || c.RenewalJitter >= 1 {
		c.RenewalJitter = 0.1
	}
	return c
}

// orDiscard is logger, or a logger that discards when it is nil.
func orDiscard(logger *slog.Logger) *slog.Logger {
	if logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return logger
}

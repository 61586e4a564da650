package agentapi

import (
	"cmp"
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
	if c.Now == nil {
		c.Now = time.Now
	}
	c.RefreshInterval = cmp.Or(max(c.RefreshInterval, 0), time.Second)
	c.FlushInterval = cmp.Or(max(c.FlushInterval, 0), 5*time.Second)
	c.BackoffBase = cmp.Or(max(c.BackoffBase, 0), time.Minute)
	c.BackoffCap = cmp.Or(max(c.BackoffCap, 0), 6*time.Hour)
	c.ReissueInterval = cmp.Or(max(c.ReissueInterval, 0), time.Minute)
	c.OfflineAfter = cmp.Or(max(c.OfflineAfter, 0), 5*time.Minute)
	c.OrderTimeout = cmp.Or(max(c.OrderTimeout, 0), 10*time.Minute)
	c.ChallengeTimeout = cmp.Or(max(c.ChallengeTimeout, 0), 2*time.Minute)
	c.ChallengePoll = cmp.Or(max(c.ChallengePoll, 0), 250*time.Millisecond)
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

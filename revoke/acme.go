package revoke

import (
	"context"
	"log/slog"
	"time"

	"github.com/certops/certops/issuer"
	"github.com/certops/certops/store"
	"github.com/certops/certops/textlimit"
)

// ACMEStore is what the ACMERevoker reads and writes; *store.Store
// implements it.
type ACMEStore interface {
	ClaimACMERevocations(ctx context.Context, limit int, retry time.Duration) ([]store.RevokedSerial, error)
	RecordACMERevocation(ctx context.Context, id int64, errText string, at time.Time, maxAttempts int) error
}

// Revokers finds the Revoker of an issuer; *issuer.Registry implements it.
type Revokers interface {
	Revoker(name string) (issuer.Revoker, error)
}

// Defaults of the ACMERevoker.
const (
	// ACMEInterval is how often the revoker looks for revocations to send.
	ACMEInterval = 15 * time.Second
	// ACMERetry is how long a failed (or claimed) revocation waits before
	// the next attempt.
	ACMERetry = 5 * time.Minute
	// ACMEMaxAttempts is how many attempts a revocation gets before it is
	// marked failed (about a day at ACMERetry apart).
	ACMEMaxAttempts = 288
	acmeBatch       = 20
)

// ACMERevoker sends the revocations of ACME certificates to their CA
// (lego's RevokeWithReason, with the reason from Git) and records each
// outcome in Postgres, where the status API and the logs show it. Every
// replica may run it: each revocation is claimed by one of them.
type ACMERevoker struct {
	store    ACMEStore
	revokers Revokers
	interval time.Duration
	log      *slog.Logger
}

// NewACMERevoker returns the revoker; interval 0 is ACMEInterval.
func NewACMERevoker(st ACMEStore, revokers Revokers, interval time.Duration, logger *slog.Logger) *ACMERevoker {
	if interval <= 0 {
		interval = ACMEInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &ACMERevoker{store: st, revokers: revokers, interval: interval, log: logger}
}

// Run sends revocations every interval until ctx ends.
func (r *ACMERevoker) Run(ctx context.Context) error {
	tick := time.NewTicker(r.interval)
	defer tick.Stop()
	for {
		if _, err := r.Once(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("ACME revocations", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Once claims the revocations due and sends each to its CA, recording
// the outcome; it returns how many it attempted.
func (r *ACMERevoker) Once(ctx context.Context) (int, error) {
	due, err := r.store.ClaimACMERevocations(ctx, acmeBatch, ACMERetry)
	if err != nil {
		return 0, err
	}
	for _, rv := range due {
		err := r.revoke(ctx, rv)
		errText := ""
		if err != nil {
			errText = textlimit.Message(err.Error())
			r.log.Warn("revocation at the ACME CA failed", "issuer", rv.Issuer, "certificate", rv.Certificate,
				"serial", rv.Serial, "revocation", rv.Revocation, "attempt", rv.ACMETrials+1, "err", err)
		} else {
			r.log.Info("certificate revoked at the ACME CA", "issuer", rv.Issuer, "certificate", rv.Certificate,
				"serial", rv.Serial, "revocation", rv.Revocation, "reason", rv.Reason)
		}
		if err := r.store.RecordACMERevocation(ctx, rv.ID, errText, time.Now(), ACMEMaxAttempts); err != nil {
			return len(due), err
		}
	}
	return len(due), nil
}

func (r *ACMERevoker) revoke(ctx context.Context, rv store.RevokedSerial) error {
	if rv.CertPEM == "" {
		return errNoCertificate
	}
	rk, err := r.revokers.Revoker(rv.Issuer)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return rk.Revoke(ctx, rv.CertPEM, rv.Reason)
}

type revokeError string

func (e revokeError) Error() string { return string(e) }

const errNoCertificate = revokeError("the certificate of the serial is not stored")

package store

import (
	"context"
	"fmt"
	"time"

	"github.com/certops/certops/state"
	"github.com/jackc/pgx/v5"
)

// ACMEOrder is an ACME order in progress for one certificate on one agent.
type ACMEOrder struct {
	Certificate, Agent, SpecHash string
	// Holder names the replica running the order.
	Holder    string
	StartedAt time.Time
	// ExpiresAt ends the claim even if the holder never releases it.
	ExpiresAt time.Time
	// Issuer and NameSet (spec.CertificateSpec.NameSet) say which
	// rate-limit ledger the order counts in; Limit is that issuer's
	// certificates per name set per 7 days (0: none).
	Issuer, NameSet string
	Limit           int
	// ARIRenewal: the order renews a certificate inside the window the CA
	// suggested; it is not held back by the limit (but is counted).
	ARIRenewal bool
}

// ACMEClaim is what ClaimACMEOrder did.
type ACMEClaim struct {
	// Claimed: the order is the caller's to run. False with Wait nil: an
	// order for the certificate and agent is in progress already.
	Claimed bool
	// Wait is set when the order would exceed the rate limit: the
	// deployment as written, waiting until its NotBefore with Waiting
	// saying why.
	Wait *state.Deployment
}

// rateLimitWindow is the period a CA's per-name-set limit counts over.
const rateLimitWindow = 7 * 24 * time.Hour

// ClaimACMEOrder records o as the order in progress for its certificate
// and agent, unless another one is (and has not expired at o.StartedAt) or
// the order would take the issuer's name set over o.Limit: the
// certificates issued for it in the last 7 days and the other orders in
// progress for it count, and an ARI renewal is never held back. A held-back
// deployment gets NotBefore set to when a certificate of the 7 days leaves
// the window (or, when only orders in progress fill it, when the first of
// them expires) and Waiting to the reason, in the same transaction. One
// advisory lock per issuer and name set serializes the claims across
// replicas, so concurrent claims cannot exceed the limit together.
func (s *Store) ClaimACMEOrder(ctx context.Context, o ACMEOrder) (ACMEClaim, error) {
	var out ACMEClaim
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if o.Limit > 0 {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('certops-acme-rate:' || $1 || ' ' || $2, 0))`,
				o.Issuer, o.NameSet); err != nil {
				return err
			}
		}
		var busy bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM acme_orders
			WHERE certificate = $1 AND agent = $2 AND expires_at > $3)`, o.Certificate, o.Agent, o.StartedAt).Scan(&busy); err != nil {
			return err
		}
		if busy {
			return nil
		}
		if o.Limit > 0 && !o.ARIRenewal {
			until, issued, ordering, err := rateLimitWait(ctx, tx, o)
			if err != nil {
				return err
			}
			if !until.IsZero() {
				d, err := recordRateLimitWait(ctx, tx, o, until, state.RateLimitWaiting(o.Issuer, until, issued, ordering, o.Limit))
				out.Wait = &d
				return err
			}
		}
		// The claim itself decides, row-locked: without a limit no advisory
		// lock serializes two claims of one order, and both may have found
		// it free above.
		tag, err := tx.Exec(ctx, `
			INSERT INTO acme_orders AS a (certificate, agent, spec_hash, holder, started_at, expires_at, issuer, name_set, ari_renewal)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (certificate, agent) DO UPDATE SET
				spec_hash = excluded.spec_hash, holder = excluded.holder,
				started_at = excluded.started_at, expires_at = excluded.expires_at,
				issuer = excluded.issuer, name_set = excluded.name_set, ari_renewal = excluded.ari_renewal
			WHERE a.expires_at <= excluded.started_at`,
			o.Certificate, o.Agent, o.SpecHash, o.Holder, o.StartedAt, o.ExpiresAt, o.Issuer, o.NameSet, o.ARIRenewal)
		out.Claimed = err == nil && tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return ACMEClaim{}, fmt.Errorf("store: claim ACME order of %s for %s: %w", o.Certificate, o.Agent, err)
	}
	return out, nil
}

// rateLimitWait is when o may be ordered without exceeding its limit —
// zero when now — and how many certificates were issued for the name set
// in the window and are being ordered. The rows that left the window long
// ago are dropped on the way.
func rateLimitWait(ctx context.Context, tx pgx.Tx, o ACMEOrder) (until time.Time, issuedCount, ordering int, err error) {
	since := o.StartedAt.Add(-rateLimitWindow)
	if _, err := tx.Exec(ctx, `DELETE FROM acme_issuances WHERE issuer = $1 AND name_set = $2 AND issued_at < $3`,
		o.Issuer, o.NameSet, o.StartedAt.Add(-ACMELedgerRetention)); err != nil {
		return time.Time{}, 0, 0, err
	}
	rows, err := tx.Query(ctx, `SELECT issued_at FROM acme_issuances
		WHERE issuer = $1 AND name_set = $2 AND issued_at > $3 ORDER BY issued_at`, o.Issuer, o.NameSet, since)
	if err != nil {
		return time.Time{}, 0, 0, err
	}
	issued, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return time.Time{}, 0, 0, err
	}
	var firstExpiry *time.Time
	if err := tx.QueryRow(ctx, `SELECT count(*), min(expires_at) FROM acme_orders
		WHERE issuer = $1 AND name_set = $2 AND expires_at > $3 AND NOT (certificate = $4 AND agent = $5)`,
		o.Issuer, o.NameSet, o.StartedAt, o.Certificate, o.Agent).Scan(&ordering, &firstExpiry); err != nil {
		return time.Time{}, 0, 0, err
	}
	switch k := len(issued) + ordering - o.Limit; {
	case k < 0:
		return time.Time{}, len(issued), ordering, nil
	case ordering > 0:
		// Orders in progress take part in filling the limit. They take
		// seconds to minutes, and a failed one frees its slot: look again
		// soon, when the count is settled.
		until := o.StartedAt.Add(orderingRetry)
		if firstExpiry.Before(until) {
			until = *firstExpiry
		}
		return until, len(issued), ordering, nil
	default:
		// k+1 of the certificates must leave the window, oldest first, 7
		// days after each was issued.
		return issued[k].Add(rateLimitWindow), len(issued), ordering, nil
	}
}

// orderingRetry is how soon a deployment held back by orders in progress
// (rather than by certificates issued) asks again.
const orderingRetry = time.Minute

// recordRateLimitWait marks the deployment of o as waiting until until,
// for o's spec, and returns it as written.
func recordRateLimitWait(ctx context.Context, tx pgx.Tx, o ACMEOrder, until time.Time, why string) (state.Deployment, error) {
	rows, err := tx.Query(ctx, `
		WITH dep AS (
			INSERT INTO deployments AS d (certificate, agent, spec_hash, not_before, waiting, updated_at, change_seq, change_xid)
			VALUES ($1, $2, $3, $4, $5, now(), `+nextChange+`)
			ON CONFLICT (certificate, agent) DO UPDATE SET
				failures = CASE WHEN d.spec_hash = excluded.spec_hash THEN d.failures ELSE 0 END,
				spec_hash = excluded.spec_hash, not_before = excluded.not_before, waiting = excluded.waiting,
				updated_at = now(), `+changeSet+`
			RETURNING *
		)
		SELECT `+deploymentColumns+` FROM dep AS d LEFT JOIN certificate_versions v ON v.id = d.current_version`,
		o.Certificate, o.Agent, o.SpecHash, until, why)
	if err != nil {
		return state.Deployment{}, err
	}
	return pgx.CollectExactlyOneRow(rows, scanDeployment)
}

// ReleaseACMEOrder ends holder's claim on the order of certificate for agent.
func (s *Store) ReleaseACMEOrder(ctx context.Context, certificate, agent, holder string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM acme_orders WHERE certificate = $1 AND agent = $2 AND holder = $3`,
		certificate, agent, holder)
	if err != nil {
		return fmt.Errorf("store: release ACME order of %s for %s: %w", certificate, agent, err)
	}
	return nil
}

// ACMEChallenge is an http-01 challenge the agents deploying a
// certificate are asked to serve from their webroot.
type ACMEChallenge struct {
	Token       string
	Certificate string
	KeyAuth     string
	Webroot     string
	Agents      []string // asked to serve it
	Ready       []string // confirmed it is in place (read only)
	ExpiresAt   time.Time
}

// PutACMEChallenge publishes a challenge (replacing one with its token)
// and drops challenges expired at now, bumping the challenge change counter.
func (s *Store) PutACMEChallenge(ctx context.Context, ch ACMEChallenge, now time.Time) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM acme_challenges WHERE expires_at < $1 OR token = $2`, now, ch.Token); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO acme_challenges (token, certificate, key_auth, webroot, agents, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			ch.Token, ch.Certificate, ch.KeyAuth, ch.Webroot, ch.Agents, ch.ExpiresAt); err != nil {
			return err
		}
		return bumpAgentChanges(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("store: publish ACME challenge for %s: %w", ch.Certificate, err)
	}
	return nil
}

// DeleteACMEChallenge withdraws a challenge, bumping the challenge change
// counter when there was one.
func (s *Store) DeleteACMEChallenge(ctx context.Context, token string) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM acme_challenges WHERE token = $1`, token)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return bumpAgentChanges(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("store: withdraw ACME challenge: %w", err)
	}
	return nil
}

// ACMEChallenges returns the challenges not expired at now, with the
// agents that confirmed each, by token.
func (s *Store) ACMEChallenges(ctx context.Context, now time.Time) ([]ACMEChallenge, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT c.token, c.certificate, c.key_auth, c.webroot, c.agents, c.expires_at,
			coalesce(array_agg(r.agent ORDER BY r.agent) FILTER (WHERE r.agent IS NOT NULL), '{}')
		FROM acme_challenges c LEFT JOIN acme_challenge_ready r ON r.token = c.token
		WHERE c.expires_at >= $1
		GROUP BY c.token ORDER BY c.token`, now)
	if err != nil {
		return nil, fmt.Errorf("store: ACME challenges: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ACMEChallenge, error) {
		var c ACMEChallenge
		err := row.Scan(&c.Token, &c.Certificate, &c.KeyAuth, &c.Webroot, &c.Agents, &c.ExpiresAt, &c.Ready)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: ACME challenges: %w", err)
	}
	return out, nil
}

// ConfirmACMEChallenge records that agent serves the challenge, bumping
// the challenge change counter (the agent's list shows it ready). It
// reports false when there is no such challenge for that agent.
func (s *Store) ConfirmACMEChallenge(ctx context.Context, token, agent string, at time.Time) (bool, error) {
	var confirmed bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO acme_challenge_ready (token, agent, ready_at)
			SELECT token, $2, $3 FROM acme_challenges WHERE token = $1 AND $2 = ANY (agents)
			ON CONFLICT (token, agent) DO UPDATE SET ready_at = excluded.ready_at`, token, agent, at)
		if err != nil || tag.RowsAffected() != 1 {
			return err
		}
		confirmed = true
		return bumpAgentChanges(ctx, tx)
	})
	if err != nil {
		return false, fmt.Errorf("store: confirm ACME challenge for %s: %w", agent, err)
	}
	return confirmed, nil
}

// ACMEChallengeReady lists the agents that confirmed the challenge.
func (s *Store) ACMEChallengeReady(ctx context.Context, token string) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT agent FROM acme_challenge_ready WHERE token = $1 ORDER BY agent`, token)
	if err != nil {
		return nil, fmt.Errorf("store: ACME challenge confirmations: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: ACME challenge confirmations: %w", err)
	}
	return out, nil
}

// ExtendIssueBackoff moves the deployment's next accepted issue attempt to
// notBefore when that is later (a CA's Retry-After). It returns the
// deployment as written.
func (s *Store) ExtendIssueBackoff(ctx context.Context, certificate, agent string, notBefore time.Time) (state.Deployment, error) {
	rows, err := s.pool.Query(ctx, `
		WITH dep AS (
			UPDATE deployments AS d SET not_before = greatest(d.not_before, $3::timestamptz),
				updated_at = now(), `+changeSet+`
			WHERE d.certificate = $1 AND d.agent = $2
			RETURNING d.*
		)
		SELECT `+deploymentColumns+` FROM dep AS d LEFT JOIN certificate_versions v ON v.id = d.current_version`,
		certificate, agent, notBefore)
	if err != nil {
		return state.Deployment{}, fmt.Errorf("store: extend backoff of %s for %s: %w", certificate, agent, err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, scanDeployment)
	if err != nil {
		return state.Deployment{}, fmt.Errorf("store: extend backoff of %s for %s: %w", certificate, agent, err)
	}
	return d, nil
}

// bumpAgentChanges tells every replica that the published challenges
// changed; it is the last statement of its transaction. (Deployments have
// their own change feed, see DeploymentsSince.)
func bumpAgentChanges(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `UPDATE agent_changes SET seq = seq + 1 WHERE id = 1`)
	return err
}

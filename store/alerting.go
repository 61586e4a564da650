package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// AlertFacts are the facts the alerting package evaluates, read in one
// snapshot.
type AlertFacts struct {
	Certificates []CertificateFacts
	Agents       []AgentFacts
	// Jobs counts deployments whose latest attempt (issue or deploy) is at
	// or after JobsSince; FailedJobs those of them that failed.
	Jobs, FailedJobs int
	// IssueFailures counts deployments whose latest attempt, at or after
	// IssueFailuresSince, was a failed issuance.
	IssueFailures int
	// BackupPolicy reports whether the desired state has a BackupPolicy.
	BackupPolicy bool
	// IssuerDurations are the certificates' lifetimes by issuer: each
	// issuerRef with the longest spec.duration of the certificates naming
	// it (spec.DefaultDuration where one leaves it out).
	IssuerDurations map[string]time.Duration
}

// CertificateFacts is one certificate's installed validity and renewal
// time across the agents its deploy block currently targets.
type CertificateFacts struct {
	Name string
	// NotBefore and NotAfter are those of the installed certificate that
	// expires first (zero: nothing installed).
	NotBefore, NotAfter time.Time
	// RenewAt is the earliest renewal time of the current versions.
	RenewAt time.Time
	// ServedNotBefore and ServedNotAfter are those of the served
	// certificate (the agents' served checks) that expires first; zero
	// when nothing was seen served.
	ServedNotBefore, ServedNotAfter time.Time
	// ServedMismatchSince is the earliest time since which an agent's
	// service has served another serial than the one installed; zero when
	// none does. ServedMismatchAgents are those agents, sorted.
	ServedMismatchSince  time.Time
	ServedMismatchAgents []string
	// RevokedInUseSince is the earliest revocation time of a revoked
	// serial (a Revocation from Git) that an agent still has installed or
	// its service still serves; zero when none. RevokedInUseAgents are
	// those agents, sorted.
	RevokedInUseSince  time.Time
	RevokedInUseAgents []string
}

// AgentFacts is an agent of the desired state with its liveness.
type AgentFacts struct {
	Name     string
	Added    time.Time
	LastSeen time.Time // zero: never seen
}

// AlertFacts reads the facts for alerting: jobs counted since jobsSince,
// issuance failures since issueFailuresSince.
func (s *Store) AlertFacts(ctx context.Context, jobsSince, issueFailuresSince time.Time) (AlertFacts, error) {
	var f AlertFacts
	err := s.inReadTx(ctx, func(tx pgx.Tx) error {
		// Deployments of agents the certificate no longer targets are left
		// out, as the agent API does (same predicate as AgentAssignments).
		rows, err := tx.Query(ctx, `
			SELECT c.name,
			       (array_agg(v.not_before ORDER BY d.installed_not_after) FILTER (WHERE d.installed_not_after IS NOT NULL))[1],
			       min(d.installed_not_after), min(d.renew_at),
			       (array_agg(d.served_not_before ORDER BY d.served_not_after) FILTER (WHERE d.served_not_after IS NOT NULL))[1],
			       min(d.served_not_after), min(d.served_mismatch_since),
			       array_agg(d.agent ORDER BY d.agent) FILTER (WHERE d.served_mismatch_since IS NOT NULL),
			       min(rv.revoked_at),
			       array_agg(d.agent ORDER BY d.agent) FILTER (WHERE rv.revoked_at IS NOT NULL)
			FROM objects c
			JOIN deployments d ON d.certificate = c.name
			JOIN objects a ON a.kind = $2 AND a.name = d.agent
			LEFT JOIN LATERAL (
				SELECT min(r.revoked_at) AS revoked_at FROM revocations r
				WHERE r.certificate = d.certificate AND r.serial <> ''
					AND (r.serial = d.installed_serial OR r.serial = d.served_serial)) rv ON true
			LEFT JOIN certificate_versions v
			       ON v.certificate = d.certificate AND v.agent = d.agent AND v.serial = d.installed_serial
			WHERE c.kind = $1 AND (
				c.spec->'deploy'->'agents' ? d.agent
				OR (c.spec->'deploy'->'agentSelector'->'matchLabels' <@ a.labels
				    AND c.spec->'deploy'->'agentSelector'->'matchLabels' <> '{}'::jsonb))
			GROUP BY c.name
			ORDER BY c.name`, string(spec.KindCertificate), string(spec.KindAgent))
		if err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
		f.Certificates, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (CertificateFacts, error) {
			var c CertificateFacts
			var notBefore, notAfter, renewAt, servedNotBefore, servedNotAfter, mismatch, revoked *time.Time
			err := row.Scan(&c.Name, &notBefore, &notAfter, &renewAt, &servedNotBefore, &servedNotAfter, &mismatch, &c.ServedMismatchAgents,
				&revoked, &c.RevokedInUseAgents)
			c.RevokedInUseSince = deref(revoked)
			c.NotBefore, c.NotAfter, c.RenewAt = deref(notBefore), deref(notAfter), deref(renewAt)
			c.ServedNotBefore, c.ServedNotAfter, c.ServedMismatchSince = deref(servedNotBefore), deref(servedNotAfter), deref(mismatch)
			return c, err
		})
		if err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
		rows, err = tx.Query(ctx, `
			SELECT o.name, o.created_at, s.last_seen
			FROM objects o LEFT JOIN agent_status s ON s.name = o.name
			WHERE o.kind = $1 ORDER BY o.name`, string(spec.KindAgent))
		if err != nil {
			return fmt.Errorf("agents: %w", err)
		}
		f.Agents, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (AgentFacts, error) {
			var a AgentFacts
			var seen *time.Time
			err := row.Scan(&a.Name, &a.Added, &seen)
			a.LastSeen = deref(seen)
			return a, err
		})
		if err != nil {
			return fmt.Errorf("agents: %w", err)
		}
		err = tx.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE last_attempt >= $1),
			       count(*) FILTER (WHERE last_attempt >= $1 AND state IN ($3, $4, $5)),
			       count(*) FILTER (WHERE last_attempt >= $2 AND state = $3),
			       EXISTS (SELECT 1 FROM objects WHERE kind = $6)
			FROM deployments`,
			jobsSince, issueFailuresSince, state.DeploymentIssueFailed, state.DeploymentFailed, state.DeploymentRolledBack,
			string(spec.KindBackupPolicy),
		).Scan(&f.Jobs, &f.FailedJobs, &f.IssueFailures, &f.BackupPolicy)
		if err != nil {
			return fmt.Errorf("jobs: %w", err)
		}
		// Few rows: one per issuer and distinct duration string.
		rows, err = tx.Query(ctx, `
			SELECT DISTINCT coalesce(spec->>'issuerRef', ''), coalesce(spec->>'duration', '')
			FROM objects WHERE kind = $1`, string(spec.KindCertificate))
		if err != nil {
			return fmt.Errorf("issuer durations: %w", err)
		}
		f.IssuerDurations = map[string]time.Duration{}
		var issuer, duration string
		_, err = pgx.ForEachRow(rows, []any{&issuer, &duration}, func() error {
			d := (&spec.CertificateSpec{Duration: duration}).DurationValue()
			f.IssuerDurations[issuer] = max(f.IssuerDurations[issuer], d)
			return nil
		})
		if err != nil {
			return fmt.Errorf("issuer durations: %w", err)
		}
		return nil
	})
	if err != nil {
		return AlertFacts{}, fmt.Errorf("store: alert facts: %w", err)
	}
	return f, nil
}

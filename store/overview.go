package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// OverviewQuery says what Overview aggregates.
type OverviewQuery struct {
	// Now is the time the overview is computed for.
	Now time.Time
	// ExpiringBefore: installed certificates that end before it are
	// expiring soon.
	ExpiringBefore time.Time
	// OfflineBefore: agents last seen before it (or never) are offline.
	OfflineBefore time.Time
	// Weeks is the length of the expiry timeline, from the week of Now.
	Weeks int
	// Limit bounds each list (expiring, failing, offline).
	Limit int
}

// Overview is the fleet in aggregate, read in one snapshot. It counts only
// deployments whose certificate and agent are both applied objects; a
// deployment's state is as last recorded (for the spec it was recorded
// for).
type Overview struct {
	Certificates, Agents int
	// CertificatesByState counts certificates by the worst state of their
	// deployments (failed, rolled-back, issue-failed, issued, installed),
	// and those without any deployment as pending.
	CertificatesByState map[state.DeploymentState]int
	// Expiring are the deployments whose installed certificate ends soonest
	// (before ExpiringBefore), ExpiringTotal how many there are in all.
	Expiring      []ExpiringDeployment
	ExpiringTotal int
	// Failing are the failed deployments (issue-failed, failed,
	// rolled-back), most recent first, FailingTotal how many in all.
	Failing      []FailingDeployment
	FailingTotal int
	// Offline are the agents not heard from since OfflineBefore, those
	// never seen first, OfflineTotal how many in all.
	Offline      []OfflineAgent
	OfflineTotal int
	// Timeline counts the installed certificates ending in each week (UTC,
	// from Monday), starting with the week of Now.
	Timeline []WeekCount
}

// ExpiringDeployment is an installed certificate that ends soon.
type ExpiringDeployment struct {
	Certificate, Agent, Serial string
	NotAfter                   time.Time
}

// FailingDeployment is a deployment whose last attempt failed.
type FailingDeployment struct {
	Certificate, Agent string
	State              state.DeploymentState
	LastError          string
	LastAttempt        *time.Time
}

// OfflineAgent is an agent not heard from recently; LastSeen is nil when
// it never was.
type OfflineAgent struct {
	Name     string
	LastSeen *time.Time
}

// WeekCount is the number of installed certificates ending in the week
// that starts at Week.
type WeekCount struct {
	Week  time.Time
	Count int
}

// liveDeployments are the deployments (d) of applied certificates on
// applied agents.
const liveDeployments = ` FROM deployments d
	JOIN objects c ON c.kind = 'Certificate' AND c.name = d.certificate
	JOIN objects a ON a.kind = 'Agent' AND a.name = d.agent`

// failedStates are the deployment states that need attention.
var failedStates = []string{string(state.DeploymentIssueFailed), string(state.DeploymentFailed), string(state.DeploymentRolledBack)}

// Overview aggregates the fleet for a dashboard: a few grouped queries in
// one read-only snapshot, each bounded by q.Limit rows or q.Weeks buckets.
func (s *Store) Overview(ctx context.Context, q OverviewQuery) (Overview, error) {
	out := Overview{CertificatesByState: map[state.DeploymentState]int{}}
	err := s.inReadTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE kind = $1), count(*) FILTER (WHERE kind = $2)
			FROM objects WHERE kind IN ($1, $2)`, string(spec.KindCertificate), string(spec.KindAgent)).
			Scan(&out.Certificates, &out.Agents); err != nil {
			return fmt.Errorf("count objects: %w", err)
		}
		if err := certificatesByState(ctx, tx, out.CertificatesByState); err != nil {
			return err
		}
		var err error
		if out.Expiring, out.ExpiringTotal, err = expiring(ctx, tx, q); err != nil {
			return err
		}
		if out.Failing, out.FailingTotal, err = failing(ctx, tx, q); err != nil {
			return err
		}
		if out.Offline, out.OfflineTotal, err = offline(ctx, tx, q); err != nil {
			return err
		}
		out.Timeline, err = timeline(ctx, tx, q)
		return err
	})
	if err != nil {
		return Overview{}, fmt.Errorf("store: overview: %w", err)
	}
	return out, nil
}

func certificatesByState(ctx context.Context, tx pgx.Tx, into map[state.DeploymentState]int) error {
	rows, err := tx.Query(ctx, `
		WITH worst AS (
			SELECT d.certificate, min(CASE d.state WHEN 'failed' THEN 0 WHEN 'rolled-back' THEN 1
				WHEN 'issue-failed' THEN 2 WHEN 'issued' THEN 3 WHEN '' THEN 5 ELSE 4 END) AS rank
			FROM deployments d JOIN objects a ON a.kind = 'Agent' AND a.name = d.agent
			GROUP BY d.certificate)
		SELECT CASE w.rank WHEN 0 THEN 'failed' WHEN 1 THEN 'rolled-back' WHEN 2 THEN 'issue-failed'
			WHEN 3 THEN 'issued' WHEN 4 THEN 'installed' ELSE 'pending' END, count(*)
		FROM objects o LEFT JOIN worst w ON w.certificate = o.name
		WHERE o.kind = 'Certificate'
		GROUP BY 1`)
	if err != nil {
		return fmt.Errorf("certificates by state: %w", err)
	}
	var st string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&st, &n}, func() error {
		into[state.DeploymentState(st)] = n
		return nil
	})
	if err != nil {
		return fmt.Errorf("certificates by state: %w", err)
	}
	return nil
}

func expiring(ctx context.Context, tx pgx.Tx, q OverviewQuery) ([]ExpiringDeployment, int, error) {
	rows, err := tx.Query(ctx, `
		SELECT d.certificate, d.agent, d.installed_serial, d.installed_not_after, count(*) OVER ()`+liveDeployments+`
		WHERE d.installed_not_after < $1
		ORDER BY d.installed_not_after, d.certificate, d.agent
		LIMIT $2`, q.ExpiringBefore, q.Limit)
	if err != nil {
		return nil, 0, fmt.Errorf("expiring deployments: %w", err)
	}
	out := []ExpiringDeployment{}
	var e ExpiringDeployment
	var total int
	_, err = pgx.ForEachRow(rows, []any{&e.Certificate, &e.Agent, &e.Serial, &e.NotAfter, &total}, func() error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("expiring deployments: %w", err)
	}
	return out, total, nil
}

func failing(ctx context.Context, tx pgx.Tx, q OverviewQuery) ([]FailingDeployment, int, error) {
	rows, err := tx.Query(ctx, `
		SELECT d.certificate, d.agent, d.state, d.last_error, d.last_attempt, count(*) OVER ()`+liveDeployments+`
		WHERE d.state = ANY($1)
		ORDER BY d.last_attempt DESC NULLS LAST, d.certificate, d.agent
		LIMIT $2`, failedStates, q.Limit)
	if err != nil {
		return nil, 0, fmt.Errorf("failing deployments: %w", err)
	}
	out := []FailingDeployment{}
	var f FailingDeployment
	var total int
	_, err = pgx.ForEachRow(rows, []any{&f.Certificate, &f.Agent, &f.State, &f.LastError, &f.LastAttempt, &total}, func() error {
		out = append(out, f)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("failing deployments: %w", err)
	}
	return out, total, nil
}

func offline(ctx context.Context, tx pgx.Tx, q OverviewQuery) ([]OfflineAgent, int, error) {
	rows, err := tx.Query(ctx, `
		SELECT o.name, s.last_seen, count(*) OVER ()
		FROM objects o LEFT JOIN agent_status s ON s.name = o.name
		WHERE o.kind = 'Agent' AND (s.last_seen IS NULL OR s.last_seen < $1)
		ORDER BY s.last_seen NULLS FIRST, o.name
		LIMIT $2`, q.OfflineBefore, q.Limit)
	if err != nil {
		return nil, 0, fmt.Errorf("offline agents: %w", err)
	}
	out := []OfflineAgent{}
	var a OfflineAgent
	var total int
	_, err = pgx.ForEachRow(rows, []any{&a.Name, &a.LastSeen, &total}, func() error {
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("offline agents: %w", err)
	}
	return out, total, nil
}

// timeline counts expiries per week from the week of q.Now; weeks without
// any are there with a zero count.
func timeline(ctx context.Context, tx pgx.Tx, q OverviewQuery) ([]WeekCount, error) {
	if q.Weeks <= 0 {
		return []WeekCount{}, nil
	}
	start := weekStart(q.Now)
	end := start.AddDate(0, 0, 7*q.Weeks)
	rows, err := tx.Query(ctx, `
		SELECT floor(extract(epoch FROM d.installed_not_after - $1::timestamptz) / 604800)::int, count(*)`+liveDeployments+`
		WHERE d.installed_not_after >= $1 AND d.installed_not_after < $2
		GROUP BY 1`, start, end)
	if err != nil {
		return nil, fmt.Errorf("expiry timeline: %w", err)
	}
	out := make([]WeekCount, q.Weeks)
	for i := range out {
		out[i].Week = start.AddDate(0, 0, 7*i)
	}
	var week, n int
	_, err = pgx.ForEachRow(rows, []any{&week, &n}, func() error {
		if week >= 0 && week < len(out) {
			out[week].Count = n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("expiry timeline: %w", err)
	}
	return out, nil
}

// weekStart is the Monday 00:00 UTC of t's week.
func weekStart(t time.Time) time.Time {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
}

// MaxVersionsPage bounds CertificateVersions.
const MaxVersionsPage = 100

// CertificateVersions returns the newest versions issued for the
// certificate (to any agent), newest first, at most limit (up to
// MaxVersionsPage), without their PEM, with their ARI window and mark.
func (s *Store) CertificateVersions(ctx context.Context, certificate string, limit int) ([]state.CertificateVersion, error) {
	limit = min(max(limit, 1), MaxVersionsPage)
	rows, err := s.pool.Query(ctx, `
		SELECT id, certificate, agent, spec_hash, serial, sha256, not_before, not_after, issuer, issued_at,
			ari_window_start, ari_window_end, ari_renewal
		FROM certificate_versions WHERE certificate = $1
		ORDER BY id DESC LIMIT $2`, certificate, limit)
	if err != nil {
		return nil, fmt.Errorf("store: versions of %s: %w", certificate, err)
	}
	out := []state.CertificateVersion{}
	var v state.CertificateVersion
	var windowStart, windowEnd *time.Time
	_, err = pgx.ForEachRow(rows, []any{&v.ID, &v.Certificate, &v.Agent, &v.SpecHash, &v.Serial, &v.SHA256,
		&v.NotBefore, &v.NotAfter, &v.Issuer, &v.IssuedAt, &windowStart, &windowEnd, &v.ARIRenewal}, func() error {
		w := v
		if windowStart != nil && windowEnd != nil {
			w.RenewalWindow = &state.RenewalWindow{Start: *windowStart, End: *windowEnd}
		}
		out = append(out, w)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: versions of %s: %w", certificate, err)
	}
	return out, nil
}

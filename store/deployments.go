package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/state"
)

// Issuance is a signed certificate to record for one agent.
type Issuance struct {
	Version state.CertificateVersion
	RenewAt time.Time
	// ACME, for a certificate an ACME issuer issued, enters it in the
	// issuer's rate-limit ledger (see ClaimACMEOrder).
	ACME *ACMEIssuance
}

// ACMEIssuance is an ACME certificate's entry in the rate-limit ledger.
type ACMEIssuance struct {
	NameSet    string // spec.CertificateSpec.NameSet
	ARIRenewal bool   // renewed inside the CA's suggested window
}

// IssueFailure is a refused or failed issue attempt.
type IssueFailure struct {
	Certificate, Agent, SpecHash string
	Error                        string
	At                           time.Time
	// Backoff: the next attempt is accepted after
	// At + min(Cap, Base·2^(failures−1)), failures counting this one.
	Base, Cap time.Duration
}

// DeploymentReport is an agent's report of one deployment attempt.
type DeploymentReport struct {
	Certificate, Agent, SpecHash string
	Serial                       string
	// Result is state.DeploymentInstalled, DeploymentFailed or DeploymentRolledBack.
	Result state.DeploymentState
	// Stage is the agent's (agentproto.Stage*): a failed issue-stage report
	// of the spec whose issue the server refused keeps the server's state.
	Stage string
	Error string
	At    time.Time
}

// deploymentColumns select a deployment with its current version (d, v).
const deploymentColumns = `d.certificate, d.agent, d.spec_hash, d.renew_at, d.installed_serial,
	d.installed_spec_hash, d.installed_not_after, d.state, d.state_spec_hash, d.last_error, d.last_attempt, d.failures,
	d.not_before, d.updated_at, d.change_seq, d.waiting,
	v.id, v.spec_hash, v.serial, v.sha256, v.not_before, v.not_after, v.cert_pem, v.chain_pem, v.issuer, v.issued_at,
	v.ari_window_start, v.ari_window_end`

const deploymentFrom = ` FROM deployments d LEFT JOIN certificate_versions v ON v.id = d.current_version`

// servedColumns follow deploymentColumns where a read also wants
// Deployment.Served (scanDeploymentServed).
const servedColumns = `, d.served_serial, d.served_not_before, d.served_not_after, d.served_checked_at,
	d.served_error, d.served_mismatch_since,
	EXISTS (SELECT 1 FROM revocations r WHERE r.certificate = d.certificate AND r.serial <> ''
		AND (r.serial = d.installed_serial OR r.serial = d.served_serial))`

// Every write of a deployment row takes the next change_seq and records its
// transaction in change_xid (see DeploymentsSince): nextChange in the
// inserted values, changeSet in ON CONFLICT's update, where the sequence is
// read once the row is locked, so a row's change_seq only grows.
const (
	nextChange = `nextval('agent_change_seq'), pg_current_xact_id()`
	changeSet  = `change_seq = nextval('agent_change_seq'), change_xid = pg_current_xact_id()`
)

// RecordIssuance stores a new version and makes it the deployment's current
// one (resetting failures and backoff), in one statement (see nextChange).
// It returns the deployment as written.
func (s *Store) RecordIssuance(ctx context.Context, in Issuance) (state.Deployment, error) {
	v := in.Version
	var windowStart, windowEnd *time.Time
	if w := v.RenewalWindow; w != nil {
		windowStart, windowEnd = &w.Start, &w.End
	}
	var nameSet *string
	var ariRenewal bool
	if a := in.ACME; a != nil {
		nameSet, ariRenewal = &a.NameSet, a.ARIRenewal
	}
	rows, err := s.pool.Query(ctx, `
		WITH v AS (
			INSERT INTO certificate_versions
				(certificate, agent, spec_hash, serial, sha256, not_before, not_after, cert_pem, chain_pem, issuer, issued_at,
				ari_window_start, ari_window_end, ari_checked_at, ari_renewal)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $13, $14, CASE WHEN $13::timestamptz IS NULL THEN NULL ELSE $11::timestamptz END, $16)
			RETURNING *
		), dep AS (
			INSERT INTO deployments AS d (certificate, agent, spec_hash, current_version, renew_at, state,
				state_spec_hash, last_error, last_attempt, failures, not_before, updated_at, change_seq, change_xid)
			SELECT $1, $2, $3, v.id, $12, 'issued', $3, '', $11, 0, NULL, now(), `+nextChange+` FROM v
			ON CONFLICT (certificate, agent) DO UPDATE SET
				spec_hash = excluded.spec_hash, current_version = excluded.current_version,
				renew_at = excluded.renew_at, state = excluded.state, state_spec_hash = excluded.state_spec_hash, last_error = '',
				last_attempt = excluded.last_attempt, failures = 0, not_before = NULL, waiting = '',
				updated_at = now(), `+changeSet+`
			RETURNING *
		), ledger AS (
			INSERT INTO acme_issuances (issuer, name_set, certificate, agent, serial, issued_at, ari_renewal)
			SELECT $10, $15, $1, $2, $4, $11, $16 WHERE $15::text IS NOT NULL
		)
		SELECT `+deploymentColumns+` FROM dep AS d, v`,
		v.Certificate, v.Agent, v.SpecHash, v.Serial, v.SHA256, v.NotBefore, v.NotAfter, v.CertPEM,
		v.ChainPEM, v.Issuer, v.IssuedAt, in.RenewAt, windowStart, windowEnd, nameSet, ariRenewal)
	if err != nil {
		return state.Deployment{}, fmt.Errorf("store: record issuance of %s for %s: %w", v.Certificate, v.Agent, err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, scanDeployment)
	if err != nil {
		return state.Deployment{}, fmt.Errorf("store: record issuance of %s for %s: %w", v.Certificate, v.Agent, err)
	}
	return d, nil
}

// RecordIssueFailure counts a failed issue attempt against the deployment
// and sets its backoff, in one statement. Failures of an older spec do not
// count: a spec change starts from zero. It returns the deployment as
// written.
func (s *Store) RecordIssueFailure(ctx context.Context, f IssueFailure) (state.Deployment, error) {
	rows, err := s.pool.Query(ctx, `
		WITH dep AS (
			INSERT INTO deployments AS d (certificate, agent, spec_hash, state, state_spec_hash, last_error, last_attempt,
				failures, not_before, updated_at, change_seq, change_xid)
			SELECT $1, $2, $3, 'issue-failed', $3, $4, $5::timestamptz, 1, $5::timestamptz + make_interval(secs => least($6::float8, $7::float8)), now(), `+nextChange+`
			ON CONFLICT (certificate, agent) DO UPDATE SET
				spec_hash = excluded.spec_hash, state = excluded.state, state_spec_hash = excluded.state_spec_hash,
				last_error = excluded.last_error,
				last_attempt = excluded.last_attempt,
				failures = CASE WHEN d.spec_hash = excluded.spec_hash THEN d.failures + 1 ELSE 1 END,
				not_before = excluded.last_attempt + make_interval(secs => least($7::float8,
					$6::float8 * power(2, least(CASE WHEN d.spec_hash = excluded.spec_hash THEN d.failures ELSE 0 END, 40)))),
				waiting = '', updated_at = now(), `+changeSet+`
			RETURNING *
		)
		SELECT `+deploymentColumns+` FROM dep AS d LEFT JOIN certificate_versions v ON v.id = d.current_version`,
		f.Certificate, f.Agent, f.SpecHash, f.Error, f.At, f.Base.Seconds(), f.Cap.Seconds())
	if err != nil {
		return state.Deployment{}, fmt.Errorf("store: record issue failure of %s for %s: %w", f.Certificate, f.Agent, err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, scanDeployment)
	if err != nil {
		return state.Deployment{}, fmt.Errorf("store: record issue failure of %s for %s: %w", f.Certificate, f.Agent, err)
	}
	return d, nil
}

// ErrUnknownSerial is RecordReport's answer to a report whose serial was
// never issued to that agent for that certificate, or whose time is more
// than ReportClockSkew before that serial was issued; nothing is written.
var ErrUnknownSerial = errors.New("no such serial issued to this agent for this certificate at that time")

// ReportClockSkew is how much earlier than its serial's issuance a report
// may say it happened (the agent's clock may be behind).
const ReportClockSkew = 5 * time.Minute

// RecordReport records an agent's report: the state, error and time of the
// attempt, for the report's spec hash, and on success what is installed now
// (a rollback leaves the previously installed serial). A report with a
// serial is only taken when that serial was issued to the agent for the
// certificate, no later than ReportClockSkew after the report's time; else
// ErrUnknownSerial and nothing changes. A failed report of the issue stage
// for the spec whose issue attempt the server recorded as issue-failed, or
// held back as waiting, is the agent's account of that same attempt: the
// server's state and error, which say why, stay. An installed report clears the served mismatch (the
// verify step has just compared them; the next served check tells again).
// It returns the deployment as written.
func (s *Store) RecordReport(ctx context.Context, r DeploymentReport) (state.Deployment, error) {
	switch r.Result {
	case state.DeploymentInstalled, state.DeploymentFailed, state.DeploymentRolledBack:
	default:
		return state.Deployment{}, fmt.Errorf("store: record report: result %q is not one of %q, %q, %q",
			r.Result, state.DeploymentInstalled, state.DeploymentFailed, state.DeploymentRolledBack)
	}
	installed := r.Result == state.DeploymentInstalled
	issueFailed := r.Result == state.DeploymentFailed && r.Stage == agentproto.StageIssue
	rows, err := s.pool.Query(ctx, `
		WITH known AS (
			SELECT max(not_after) AS not_after FROM certificate_versions
			WHERE certificate = $1 AND agent = $2 AND serial = $4
			HAVING $4 = '' OR min(issued_at) <= $8::timestamptz + make_interval(secs => $9::float8)
		), dep AS (
			INSERT INTO deployments AS d (certificate, agent, installed_serial, installed_spec_hash,
				installed_not_after, state, state_spec_hash, last_error, last_attempt, updated_at, change_seq, change_xid)
			SELECT $1, $2, CASE WHEN $7 THEN $4 ELSE '' END, CASE WHEN $7 THEN $3 ELSE '' END,
				CASE WHEN $7 THEN known.not_after END, $5, $3, $6, $8, now(), `+nextChange+` FROM known
			ON CONFLICT (certificate, agent) DO UPDATE SET
				installed_serial    = CASE WHEN $7 THEN excluded.installed_serial ELSE d.installed_serial END,
				installed_spec_hash = CASE WHEN $7 THEN excluded.installed_spec_hash ELSE d.installed_spec_hash END,
				installed_not_after = CASE WHEN $7 THEN excluded.installed_not_after ELSE d.installed_not_after END,
				served_mismatch_since = CASE WHEN $7 THEN NULL ELSE d.served_mismatch_since END,
				state           = CASE WHEN $10 AND (d.state = 'issue-failed' OR d.waiting <> '') AND d.spec_hash = $3 THEN d.state ELSE excluded.state END,
				state_spec_hash = excluded.state_spec_hash,
				last_error      = CASE WHEN $10 AND (d.state = 'issue-failed' OR d.waiting <> '') AND d.spec_hash = $3 THEN d.last_error ELSE excluded.last_error END,
				last_attempt    = CASE WHEN $10 AND (d.state = 'issue-failed' OR d.waiting <> '') AND d.spec_hash = $3 THEN d.last_attempt ELSE excluded.last_attempt END,
				updated_at = now(), `+changeSet+`
			RETURNING *
		)
		SELECT `+deploymentColumns+` FROM dep AS d LEFT JOIN certificate_versions v ON v.id = d.current_version`,
		r.Certificate, r.Agent, r.SpecHash, r.Serial, r.Result, r.Error, installed, r.At, ReportClockSkew.Seconds(), issueFailed)
	if err != nil {
		return state.Deployment{}, fmt.Errorf("store: record report of %s for %s: %w", r.Certificate, r.Agent, err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, scanDeployment)
	if errors.Is(err, pgx.ErrNoRows) {
		return state.Deployment{}, fmt.Errorf("store: record report of %s for %s: serial %s: %w", r.Certificate, r.Agent, r.Serial, ErrUnknownSerial)
	}
	if err != nil {
		return state.Deployment{}, fmt.Errorf("store: record report of %s for %s: %w", r.Certificate, r.Agent, err)
	}
	return d, nil
}

// ServedCheck is one served check of an agent (agentproto.ServedCheck,
// checked by the agent API): Serial, NotBefore and NotAfter, or Error.
type ServedCheck struct {
	Certificate         string
	Serial              string
	NotBefore, NotAfter time.Time
	Error               string
	CheckedAt           time.Time
}

// RecordServed records an agent's served checks on its deployments, in one
// statement: the served leaf (a failed check keeps the last one and
// records its error), the time of the check, and the mismatch: set to the
// check's time when the served serial first differs from the installed
// one, kept while it differs, cleared when they are equal (or nothing is
// installed); a failed check leaves it as it was. A check of a certificate
// without a deployment row (nothing issued to the agent yet), or older than
// the check recorded, changes nothing. Served checks do not take a
// change_seq: the agent API's snapshot does not carry them. It returns how
// many deployments were updated.
func (s *Store) RecordServed(ctx context.Context, agent string, checks []ServedCheck) (int, error) {
	n := len(checks)
	certs, serials, errs := make([]string, n), make([]string, n), make([]string, n)
	notBefore, notAfter, at := make([]*time.Time, n), make([]*time.Time, n), make([]time.Time, n)
	for i, c := range checks {
		certs[i], serials[i], errs[i], at[i] = c.Certificate, c.Serial, c.Error, c.CheckedAt
		if c.Error == "" {
			notBefore[i], notAfter[i] = &checks[i].NotBefore, &checks[i].NotAfter
		}
	}
	tag, err := s.pool.Exec(ctx, `
		UPDATE deployments AS d SET
			served_serial     = CASE WHEN c.error = '' THEN c.serial ELSE d.served_serial END,
			served_not_before = CASE WHEN c.error = '' THEN c.not_before ELSE d.served_not_before END,
			served_not_after  = CASE WHEN c.error = '' THEN c.not_after ELSE d.served_not_after END,
			served_checked_at = c.checked_at,
			served_error      = c.error,
			served_mismatch_since = CASE
				WHEN c.error <> '' THEN d.served_mismatch_since
				WHEN d.installed_serial = '' OR c.serial = d.installed_serial THEN NULL
				ELSE coalesce(d.served_mismatch_since, c.checked_at) END
		FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[], $7::timestamptz[])
			AS c(certificate, serial, not_before, not_after, error, checked_at)
		WHERE d.agent = $1 AND d.certificate = c.certificate
			AND (d.served_checked_at IS NULL OR d.served_checked_at <= c.checked_at)`,
		agent, certs, serials, notBefore, notAfter, errs, at)
	if err != nil {
		return 0, fmt.Errorf("store: record served checks of %s: %w", agent, err)
	}
	return int(tag.RowsAffected()), nil
}

// DeploymentsSince returns every deployment written by a transaction that
// may not have been visible to the read that returned mark (every one for
// mark 0), and the mark to pass next time: the xmin of this read's
// snapshot. Every transaction below it has finished, so a deployment is
// returned at least once after its write commits, and rows written by
// transactions still running are returned again later (callers keep the
// version with the higher ChangeSeq). Writers take no shared lock.
func (s *Store) DeploymentsSince(ctx context.Context, mark int64) ([]state.Deployment, int64, error) {
	var out []state.Deployment
	var next int64
	err := s.inReadTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").Scan(&next); err != nil {
			return fmt.Errorf("read the snapshot's xmin: %w", err)
		}
		rows, err := tx.Query(ctx, "SELECT "+deploymentColumns+deploymentFrom+" WHERE d.change_xid >= $1::text::xid8",
			strconv.FormatInt(mark, 10))
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanDeployment)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("store: deployments since mark %d: %w", mark, err)
	}
	return out, next, nil
}

// CertificateDeployments returns the deployments of one certificate, by
// agent, with what is served (Deployment.Served).
func (s *Store) CertificateDeployments(ctx context.Context, certificate string) ([]state.Deployment, error) {
	return s.deploymentsOf(ctx, "d.certificate = $1 ORDER BY d.agent", certificate)
}

// AgentDeployments returns every deployment of the named agent, by
// certificate, with what is served (Deployment.Served).
func (s *Store) AgentDeployments(ctx context.Context, agent string) ([]state.Deployment, error) {
	return s.deploymentsOf(ctx, "d.agent = $1 ORDER BY d.certificate", agent)
}

// deploymentsOf returns the deployments where (a constant condition on d,
// with its order) holds for name.
func (s *Store) deploymentsOf(ctx context.Context, where, name string) ([]state.Deployment, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+deploymentColumns+servedColumns+deploymentFrom+" WHERE "+where, name)
	if err != nil {
		return nil, fmt.Errorf("store: deployments of %s: %w", name, err)
	}
	out, err := pgx.CollectRows(rows, scanDeploymentServed)
	if err != nil {
		return nil, fmt.Errorf("store: deployments of %s: %w", name, err)
	}
	return out, nil
}

// DeploymentSummary counts one certificate's deployments by state.
type DeploymentSummary struct {
	Deployments int `json:"deployments"`
	// States counts them by state; a row that has none yet (a deployment
	// waiting for a rate limit before its first certificate) is pending.
	States map[string]int `json:"states,omitempty"`
	// EarliestNotAfter is the soonest expiry of what is installed.
	EarliestNotAfter *time.Time `json:"earliestNotAfter,omitempty"`
}

// DeploymentSummaries summarises the deployments of the named certificates
// (one query for a page of a list); certificates without any are absent.
func (s *Store) DeploymentSummaries(ctx context.Context, certificates []string) (map[string]DeploymentSummary, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT certificate, coalesce(nullif(state, ''), 'pending'), count(*), min(installed_not_after)
		FROM deployments WHERE certificate = ANY($1)
		GROUP BY 1, 2`, certificates)
	if err != nil {
		return nil, fmt.Errorf("store: deployment summaries: %w", err)
	}
	defer rows.Close()
	out := make(map[string]DeploymentSummary)
	var cert, st string
	var n int
	var notAfter *time.Time
	for rows.Next() {
		if err := rows.Scan(&cert, &st, &n, &notAfter); err != nil {
			return nil, fmt.Errorf("store: deployment summaries: %w", err)
		}
		sum := out[cert]
		if sum.States == nil {
			sum.States = map[string]int{}
		}
		sum.Deployments += n
		sum.States[st] += n
		if notAfter != nil && (sum.EarliestNotAfter == nil || notAfter.Before(*sum.EarliestNotAfter)) {
			sum.EarliestNotAfter = notAfter
		}
		out[cert] = sum
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: deployment summaries: %w", err)
	}
	return out, nil
}

func scanDeployment(row pgx.CollectableRow) (state.Deployment, error) {
	return scanDeploymentWith(row, nil)
}

// scanDeploymentServed scans deploymentColumns and servedColumns.
func scanDeploymentServed(row pgx.CollectableRow) (state.Deployment, error) {
	var sv state.Served
	var notBefore, notAfter, checkedAt, mismatch *time.Time
	var revoked bool
	d, err := scanDeploymentWith(row, []any{&sv.Serial, &notBefore, &notAfter, &checkedAt, &sv.Error, &mismatch, &revoked})
	d.Revoked = revoked
	if err != nil || checkedAt == nil {
		return d, err
	}
	sv.NotBefore, sv.NotAfter, sv.CheckedAt, sv.MismatchSince = deref(notBefore), deref(notAfter), *checkedAt, deref(mismatch)
	d.Served = &sv
	return d, nil
}

// scanDeploymentWith scans deploymentColumns, then the extra columns into
// their destinations.
func scanDeploymentWith(row pgx.CollectableRow, extra []any) (state.Deployment, error) {
	var d state.Deployment
	var renewAt, installedNotAfter, lastAttempt, notBefore *time.Time
	var failures int32
	var (
		vID                                              *int64
		vSpecHash, vSerial, vSHA, vCert, vChain, vIssuer *string
		vNotBefore, vNotAfter, vIssuedAt                 *time.Time
		vWindowStart, vWindowEnd                         *time.Time
	)
	dest := []any{&d.Certificate, &d.Agent, &d.SpecHash, &renewAt, &d.InstalledSerial,
		&d.InstalledSpecHash, &installedNotAfter, &d.State, &d.StateSpecHash, &d.LastError, &lastAttempt, &failures,
		&notBefore, &d.UpdatedAt, &d.ChangeSeq, &d.Waiting,
		&vID, &vSpecHash, &vSerial, &vSHA, &vNotBefore, &vNotAfter, &vCert, &vChain, &vIssuer, &vIssuedAt,
		&vWindowStart, &vWindowEnd}
	err := row.Scan(append(dest, extra...)...)
	if err != nil {
		return d, err
	}
	d.Failures = int(failures)
	d.RenewAt, d.InstalledNotAfter = deref(renewAt), deref(installedNotAfter)
	d.LastAttempt, d.NotBefore = deref(lastAttempt), deref(notBefore)
	if vID != nil {
		d.Current = &state.CertificateVersion{
			ID: *vID, Certificate: d.Certificate, Agent: d.Agent, SpecHash: *vSpecHash, Serial: *vSerial,
			SHA256: *vSHA, NotBefore: *vNotBefore, NotAfter: *vNotAfter, CertPEM: *vCert, ChainPEM: *vChain,
			Issuer: *vIssuer, IssuedAt: *vIssuedAt,
		}
		if vWindowStart != nil && vWindowEnd != nil {
			d.Current.RenewalWindow = &state.RenewalWindow{Start: *vWindowStart, End: *vWindowEnd}
		}
	}
	return d, nil
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// inReadTx runs fn in a read-only REPEATABLE READ transaction, so that its
// queries see one snapshot.
func (s *Store) inReadTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

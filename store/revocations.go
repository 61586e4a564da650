package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// Revocations declared in Git (spec.RevocationSpec) are written by Apply,
// in its fenced transaction; the rows are final. The CRLs signed from
// them are shared by the replicas in the crls table.

// ACME revocation states of a revocations row.
const (
	ACMERevocationPending = "pending"
	ACMERevocationDone    = "revoked"
	ACMERevocationFailed  = "failed"
)

// writeRevocations records the serials the plan's created and updated
// Revocation objects revoke: those of the certificate's issued versions
// that the Revocation lists, or that were issued before its issuedBefore
// (and before now). A serial already revoked keeps its first row (a
// revocation is final, its reason and time too). Deployments whose current
// version was just revoked are due for renewal at once (renew_at = the
// version's notBefore, in the past on every clock; a new change_seq), so
// their agents get a new certificate and the agent API's reissue limit
// does not hold them back. It returns how
// many serials were revoked.
func writeRevocations(ctx context.Context, tx pgx.Tx, revisionID int64, changes []state.Change) (int64, error) {
	var revoked int64
	for _, c := range changes {
		if c.Action == state.ActionDelete || c.Key.Kind != spec.KindRevocation {
			continue
		}
		r := c.Object.Revocation()
		if r == nil {
			return 0, fmt.Errorf("%s: not a Revocation spec", c.Key)
		}
		serials := make([]string, 0, len(r.Serials))
		for _, s := range r.Serials {
			if n := spec.NormalizeSerial(s); n != "" {
				serials = append(serials, n)
			}
		}
		var before *time.Time
		if t := r.IssuedBeforeTime(); !t.IsZero() {
			before = &t
		}
		tag, err := tx.Exec(ctx, `
			INSERT INTO revocations (issuer, serial, certificate, revocation, reason, revoked_at, revision_id, acme_state)
			SELECT DISTINCT ON (v.issuer, v.serial) v.issuer, v.serial, v.certificate, $2, $5, now(), $6,
				CASE WHEN coalesce((SELECT o.spec ? 'acme' FROM objects o WHERE o.kind = 'Issuer' AND o.name = v.issuer), false)
					THEN 'pending' ELSE '' END
			FROM certificate_versions v
			WHERE v.certificate = $1
				AND (v.serial = ANY($3::text[]) OR ($4::timestamptz IS NOT NULL AND v.issued_at < least($4::timestamptz, now())))
			ON CONFLICT (issuer, serial) DO NOTHING`,
			r.Certificate, c.Key.Name, serials, before, int16(spec.RevocationReasons[r.Reason]), revisionID)
		if err != nil {
			return 0, fmt.Errorf("%s: record revocations: %w", c.Key, err)
		}
		revoked += tag.RowsAffected()
	}
	if revoked == 0 {
		return 0, nil
	}
	_, err := tx.Exec(ctx, `
		UPDATE deployments AS d SET renew_at = v.not_before, updated_at = now(), `+changeSet+`
		FROM certificate_versions v, revocations r
		WHERE v.id = d.current_version AND r.issuer = v.issuer AND r.serial = v.serial
			AND r.revision_id = $1 AND (d.renew_at IS NULL OR d.renew_at > v.not_before)`, revisionID)
	if err != nil {
		return 0, fmt.Errorf("renew deployments of revoked serials: %w", err)
	}
	return revoked, nil
}

// RevokedSerial is one revoked serial of an issuer.
type RevokedSerial struct {
	ID          int64
	Issuer      string
	Serial      string // lowercase hex, as certificate_versions stores it
	Certificate string
	Revocation  string // the Revocation object's name
	Reason      int    // RFC 5280 CRLReason code
	RevokedAt   time.Time
	// ACMEState is "" for local CA issuers, else one of the ACMERevocation*
	// states; ACMEError says why the last attempt failed.
	ACMEState  string
	ACMEError  string
	CertPEM    string // the revoked certificate (for ACME revocation)
	ACMETrials int
}

// RevokedSerials returns every serial revoked for issuer, oldest first,
// and the highest revocation id among them (0 when there are none).
func (s *Store) RevokedSerials(ctx context.Context, issuer string) ([]RevokedSerial, int64, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, issuer, serial, certificate, revocation, reason, revoked_at, acme_state, acme_error, '', acme_attempts
		FROM revocations WHERE issuer = $1 ORDER BY id`, issuer)
	if err != nil {
		return nil, 0, fmt.Errorf("store: revoked serials of %s: %w", issuer, err)
	}
	out, err := pgx.CollectRows(rows, scanRevoked)
	if err != nil {
		return nil, 0, fmt.Errorf("store: revoked serials of %s: %w", issuer, err)
	}
	var last int64
	for _, r := range out {
		last = max(last, r.ID)
	}
	return out, last, nil
}

// CertificateRevocations returns the serials revoked for a certificate,
// oldest first.
func (s *Store) CertificateRevocations(ctx context.Context, certificate string) ([]RevokedSerial, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, issuer, serial, certificate, revocation, reason, revoked_at, acme_state, acme_error, '', acme_attempts
		FROM revocations WHERE certificate = $1 ORDER BY id`, certificate)
	if err != nil {
		return nil, fmt.Errorf("store: revocations of %s: %w", certificate, err)
	}
	out, err := pgx.CollectRows(rows, scanRevoked)
	if err != nil {
		return nil, fmt.Errorf("store: revocations of %s: %w", certificate, err)
	}
	return out, nil
}

func scanRevoked(row pgx.CollectableRow) (RevokedSerial, error) {
	var r RevokedSerial
	var reason int16
	err := row.Scan(&r.ID, &r.Issuer, &r.Serial, &r.Certificate, &r.Revocation, &reason, &r.RevokedAt,
		&r.ACMEState, &r.ACMEError, &r.CertPEM, &r.ACMETrials)
	r.Reason = int(reason)
	return r, err
}

// SerialStatus is what OCSP answers for one serial of an issuer.
type SerialStatus struct {
	// Issued is whether certops recorded that serial as issued by the issuer.
	Issued  bool
	Revoked *RevokedSerial // nil unless revoked
}

// SerialStatus looks a serial (lowercase hex) of an issuer up.
func (s *Store) SerialStatus(ctx context.Context, issuer, serial string) (SerialStatus, error) {
	var st SerialStatus
	err := s.pool.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM certificate_versions WHERE issuer = $1 AND serial = $2)`, issuer, serial).Scan(&st.Issued)
	if err != nil {
		return st, fmt.Errorf("store: status of serial %s of %s: %w", serial, issuer, err)
	}
	rows, err := s.pool.Query(ctx, `
		SELECT id, issuer, serial, certificate, revocation, reason, revoked_at, acme_state, acme_error, '', acme_attempts
		FROM revocations WHERE issuer = $1 AND serial = $2`, issuer, serial)
	if err != nil {
		return st, fmt.Errorf("store: status of serial %s of %s: %w", serial, issuer, err)
	}
	r, err := pgx.CollectOneRow(rows, scanRevoked)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return st, fmt.Errorf("store: status of serial %s of %s: %w", serial, issuer, err)
	default:
		st.Revoked = &r
	}
	return st, nil
}

// StoredCRL is the signed CRL of an issuer as the replicas share it.
type StoredCRL struct {
	Issuer string
	Number int64
	// Covers is the highest revocation id the CRL lists.
	Covers     int64
	CASHA256   string // of the CA certificate that signed it
	ThisUpdate time.Time
	NextUpdate time.Time
	DER        []byte
}

// CRL returns the stored CRL of issuer (nil when none was signed yet) and
// the highest revocation id of the issuer now, in one query.
func (s *Store) CRL(ctx context.Context, issuer string) (*StoredCRL, int64, error) {
	c, latest, err := readCRL(ctx, s.pool, issuer)
	if err != nil {
		return nil, 0, fmt.Errorf("store: CRL of %s: %w", issuer, err)
	}
	return c, latest, nil
}

// rowQuerier is what readCRL reads through: the pool or a transaction.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readCRL reads the stored CRL of issuer (nil when none was signed yet)
// and the highest revocation id of the issuer, in one query.
func readCRL(ctx context.Context, q rowQuerier, issuer string) (*StoredCRL, int64, error) {
	var c StoredCRL
	var latest int64
	var number *int64
	err := q.QueryRow(ctx, `
		SELECT (SELECT coalesce(max(id), 0) FROM revocations WHERE issuer = $1),
			c.number, coalesce(c.covers, 0), coalesce(c.ca_sha256, ''), coalesce(c.this_update, 'epoch'),
			coalesce(c.next_update, 'epoch'), coalesce(c.der, ''::bytea)
		FROM (SELECT 1) AS one LEFT JOIN crls c ON c.issuer = $1`, issuer).
		Scan(&latest, &number, &c.Covers, &c.CASHA256, &c.ThisUpdate, &c.NextUpdate, &c.DER)
	if err != nil || number == nil {
		return nil, latest, err
	}
	c.Issuer, c.Number = issuer, *number
	return &c, latest, nil
}

// SaveCRL signs and stores a new CRL of issuer, one replica at a time:
// build is called, under a lock on the issuer's CRL, with the stored CRL
// (nil when none) and returns the CRL to store, whose Number must be
// greater than the stored one's; or it returns the stored one itself when
// another replica already brought it up to date (nothing is written).
func (s *Store) SaveCRL(ctx context.Context, issuer string, build func(last *StoredCRL, latest int64) (*StoredCRL, error)) (*StoredCRL, error) {
	var out *StoredCRL
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('certops-crl:' || $1, 0))`, issuer); err != nil {
			return err
		}
		last, latest, err := readCRL(ctx, tx, issuer)
		if err != nil {
			return err
		}
		next, err := build(last, latest)
		if err != nil {
			return err
		}
		if next == last {
			out = last
			return nil
		}
		if last != nil && next.Number <= last.Number {
			return fmt.Errorf("CRL number %d is not greater than the stored %d", next.Number, last.Number)
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO crls (issuer, number, covers, ca_sha256, this_update, next_update, der)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (issuer) DO UPDATE SET number = excluded.number, covers = excluded.covers,
				ca_sha256 = excluded.ca_sha256, this_update = excluded.this_update,
				next_update = excluded.next_update, der = excluded.der`,
			issuer, next.Number, next.Covers, next.CASHA256, next.ThisUpdate, next.NextUpdate, next.DER)
		out = next
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: save CRL of %s: %w", issuer, err)
	}
	return out, nil
}

// ClaimACMERevocations claims up to limit revocations that still have to
// be sent to their ACME CA and were not attempted (or claimed) within
// retry, oldest first, with the certificate: their attempt time is set
// now, so another replica skips them for retry. Every replica may run
// the ACME revoker; a claim is one statement.
func (s *Store) ClaimACMERevocations(ctx context.Context, limit int, retry time.Duration) ([]RevokedSerial, error) {
	rows, err := s.pool.Query(ctx, `
		WITH claimed AS (
			UPDATE revocations SET acme_at = now()
			WHERE id IN (
				SELECT id FROM revocations
				WHERE acme_state = 'pending' AND (acme_at IS NULL OR acme_at <= now() - make_interval(secs => $2::float8))
				ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
			RETURNING *
		)
		SELECT r.id, r.issuer, r.serial, r.certificate, r.revocation, r.reason, r.revoked_at, r.acme_state, r.acme_error,
			coalesce((SELECT v.cert_pem FROM certificate_versions v WHERE v.issuer = r.issuer AND v.serial = r.serial LIMIT 1), ''),
			r.acme_attempts
		FROM claimed r ORDER BY r.id`, limit, retry.Seconds())
	if err != nil {
		return nil, fmt.Errorf("store: claim ACME revocations: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanRevoked)
	if err != nil {
		return nil, fmt.Errorf("store: claim ACME revocations: %w", err)
	}
	return out, nil
}

// RecordACMERevocation records the outcome of asking the ACME CA to revoke
// revocation id: done (revoked, or already revoked at the CA), or failed
// with errText. A failed attempt stays pending until attempts reach
// maxAttempts, then is marked failed.
func (s *Store) RecordACMERevocation(ctx context.Context, id int64, errText string, at time.Time, maxAttempts int) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE revocations SET acme_attempts = acme_attempts + 1, acme_at = $3, acme_error = $2,
			acme_state = CASE WHEN $2 = '' THEN 'revoked' WHEN acme_attempts + 1 >= $4 THEN 'failed' ELSE 'pending' END
		WHERE id = $1 AND acme_state = 'pending'`, id, errText, at, maxAttempts)
	if err != nil {
		return fmt.Errorf("store: record ACME revocation %d: %w", id, err)
	}
	return nil
}

package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/textlimit"
)

// AgentChanges returns the id of the newest revision and the challenge
// change counter (agent_changes.seq, bumped by every write of the ACME
// challenges): when one moved, the objects or the challenges are to be
// read again. It is one cheap query, made every second by each replica;
// deployments have their own feed (DeploymentsSince).
func (s *Store) AgentChanges(ctx context.Context) (revision, seq int64, err error) {
	err = s.pool.QueryRow(ctx, `
		SELECT coalesce((SELECT max(id) FROM revisions), 0),
		       coalesce((SELECT seq FROM agent_changes WHERE id = 1), 0)`).Scan(&revision, &seq)
	if err != nil {
		return 0, 0, fmt.Errorf("store: agent changes: %w", err)
	}
	return revision, seq, nil
}

// AssignmentObject is an Issuer, Agent or Certificate object as the agent
// API needs it: name, labels, annotations, the spec's JSON and the content
// hash (spec.Object.Hash) the reconciler stored with it.
type AssignmentObject struct {
	Kind        spec.Kind
	Name        string
	Labels      map[string]string
	Annotations map[string]string
	Spec        json.RawMessage
	Hash        string
}

// Decode returns the object with its spec decoded (see StoredObject.Decode).
func (o AssignmentObject) Decode() (*spec.Object, error) {
	return decodeObject(o.Kind, o.Name, o.Labels, o.Annotations, o.Spec)
}

// AssignmentChanges is what AssignmentObjects read: the Issuer, Agent and
// Certificate objects written after a revision, and those deleted since.
type AssignmentChanges struct {
	// Revision is the id of the newest revision: pass it as since next time.
	Revision int64
	// Objects are every object (since 0) or those written by a revision
	// after since.
	Objects []AssignmentObject
	// Deleted are the objects a revision after since deleted that are not
	// there now (always empty for since 0).
	Deleted []spec.Key
}

// assignmentKinds are the kinds the agent API reads.
var assignmentKinds = []string{string(spec.KindIssuer), string(spec.KindAgent), string(spec.KindCertificate),
	string(spec.KindTrustBundle)}

// AssignmentObjects returns the Issuer, Agent and Certificate objects
// written after revision since (every one for since 0) and those deleted
// since, with the id of the newest revision, read in one snapshot. Every
// write of objects is a revision's (Apply), so what it returns brings a
// copy of the objects as of since up to date. An object known says the
// caller has already (by key and content hash) comes back with its name,
// kind and hash only.
func (s *Store) AssignmentObjects(ctx context.Context, since int64, known func(k spec.Key, hash string) bool) (AssignmentChanges, error) {
	var out AssignmentChanges
	err := s.inReadTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM revisions").Scan(&out.Revision); err != nil {
			return err
		}
		if out.Revision == since {
			return nil
		}
		rows, err := tx.Query(ctx, `SELECT kind, name, labels, annotations, spec, hash FROM objects
			WHERE kind = ANY($1) AND ($2 = 0 OR revision_id > $2)`, assignmentKinds, since)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			v := rows.RawValues() // text is UTF-8; jsonb is a version byte then the JSON text
			o := AssignmentObject{Kind: spec.Kind(v[0]), Name: string(v[1]), Hash: string(v[5])}
			if known != nil && known(spec.Key{Kind: o.Kind, Name: o.Name}, o.Hash) {
				out.Objects = append(out.Objects, o)
				continue
			}
			o.Spec = json.RawMessage(jsonbText(v[4]))
			if err := json.Unmarshal(jsonbText(v[2]), &o.Labels); err != nil {
				return fmt.Errorf("labels of %s/%s: %w", o.Kind, o.Name, err)
			}
			if err := json.Unmarshal(jsonbText(v[3]), &o.Annotations); err != nil {
				return fmt.Errorf("annotations of %s/%s: %w", o.Kind, o.Name, err)
			}
			out.Objects = append(out.Objects, o)
		}
		if err := rows.Err(); err != nil || since == 0 {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT DISTINCT a.kind, a.name FROM revision_actions a
			WHERE a.revision_id > $2 AND a.action = 'delete' AND a.kind = ANY($1)
			  AND NOT EXISTS (SELECT FROM objects o WHERE o.kind = a.kind AND o.name = a.name)`, assignmentKinds, since)
		if err != nil {
			return err
		}
		out.Deleted, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (spec.Key, error) {
			var k spec.Key
			err := row.Scan(&k.Kind, &k.Name)
			return k, err
		})
		return err
	})
	if err != nil {
		return AssignmentChanges{}, fmt.Errorf("store: assignment objects since revision %d: %w", since, err)
	}
	return out, nil
}

// jsonbText is the JSON of a binary-format jsonb value (a copy: raw values
// are only valid until the next row).
func jsonbText(b []byte) []byte {
	if len(b) > 0 && b[0] == 1 {
		b = b[1:]
	}
	return append([]byte(nil), b...)
}

// AgentSeen is what the server knows of an agent's liveness.
type AgentSeen struct {
	Name     string    `json:"name"`
	LastSeen time.Time `json:"lastSeen"`
	Version  string    `json:"version,omitempty"`
	Hostname string    `json:"hostname,omitempty"`
}

// RecordAgentsSeen upserts the liveness of many agents in one statement.
// Last seen only moves forward (replicas flush independently); an empty
// version or hostname keeps the stored one. Version and hostname are made
// safe to store first (textlimit.Clean, at most 256 bytes): the agent API
// refuses bad ones, and a row that slipped through must not fail the
// batch, everyone's liveness with it.
func (s *Store) RecordAgentsSeen(ctx context.Context, seen []AgentSeen) error {
	if len(seen) == 0 {
		return nil
	}
	names := make([]string, len(seen))
	times := make([]time.Time, len(seen))
	versions := make([]string, len(seen))
	hosts := make([]string, len(seen))
	for i, a := range seen {
		names[i], times[i] = a.Name, a.LastSeen
		versions[i], hosts[i] = storableField(a.Version), storableField(a.Hostname)
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO agent_status AS a (name, last_seen, version, hostname)
		SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[])
		ON CONFLICT (name) DO UPDATE SET
			last_seen = greatest(a.last_seen, excluded.last_seen),
			version   = CASE WHEN excluded.version = '' THEN a.version ELSE excluded.version END,
			hostname  = CASE WHEN excluded.hostname = '' THEN a.hostname ELSE excluded.hostname END`,
		names, times, versions, hosts)
	if err != nil {
		return fmt.Errorf("store: record agents seen: %w", err)
	}
	return nil
}

// storableField is s without what Postgres or a reader would choke on: one
// line of valid UTF-8 without control characters, at most 256 bytes.
func storableField(s string) string { return textlimit.Truncate(textlimit.Clean(s, false), 256) }

// AgentsSeen returns the liveness of the named agents, or of every agent
// when names is nil. Agents never seen are absent.
func (s *Store) AgentsSeen(ctx context.Context, names []string) (map[string]AgentSeen, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT name, last_seen, version, hostname FROM agent_status
		WHERE last_seen IS NOT NULL AND ($1::text[] IS NULL OR name = ANY($1))`, names)
	if err != nil {
		return nil, fmt.Errorf("store: agents seen: %w", err)
	}
	defer rows.Close()
	out := make(map[string]AgentSeen)
	for rows.Next() {
		var a AgentSeen
		if err := rows.Scan(&a.Name, &a.LastSeen, &a.Version, &a.Hostname); err != nil {
			return nil, fmt.Errorf("store: agents seen: %w", err)
		}
		out[a.Name] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: agents seen: %w", err)
	}
	return out, nil
}

// AgentAssignments returns the names of the certificates whose deploy
// targets the agent (see spec.Deployment.Selects). The query only narrows the
// candidates, through the index-backed containment of the selector in the
// agent's labels; spec decides.
func (s *Store) AgentAssignments(ctx context.Context, agent string, labels map[string]string) ([]string, error) {
	labelsJSON, err := mapJSON(labels)
	if err != nil {
		return nil, fmt.Errorf("store: assignments of %s: %w", agent, err)
	}
	rows, err := s.pool.Query(ctx, `
		SELECT name, spec->'deploy' FROM objects
		WHERE kind = $1 AND (
			spec->'deploy'->'agents' ? $2
			OR spec->'deploy'->'agentSelector'->'matchLabels' <@ $3::jsonb)
		ORDER BY name`, string(spec.KindCertificate), agent, string(labelsJSON))
	if err != nil {
		return nil, fmt.Errorf("store: assignments of %s: %w", agent, err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		var deploy *spec.Deployment
		if err := rows.Scan(&name, &deploy); err != nil {
			return nil, fmt.Errorf("store: assignments of %s: %w", agent, err)
		}
		if deploy.Selects(agent, labels) {
			names = append(names, name)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: assignments of %s: %w", agent, err)
	}
	return names, nil
}

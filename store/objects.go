package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certops/certops/spec"
)

// StoredObject is an object as the store holds it.
type StoredObject struct {
	Kind        spec.Kind         `json:"kind"`
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Spec        json.RawMessage   `json:"spec"`
	Hash        string            `json:"hash"`
	Generation  int64             `json:"generation"`
	SourceFile  string            `json:"sourceFile,omitempty"`
	SourceLine  int               `json:"sourceLine,omitempty"`
	RevisionID  int64             `json:"revisionID,omitempty"`
	CreatedAt   time.Time         `json:"createdAt"`
	UpdatedAt   time.Time         `json:"updatedAt"`
}

// Decode returns the object with its spec decoded into the kind's type
// (see spec.NewSpec): the one decode of a stored spec. Its Hash equals the
// loader's for the same content.
func (o StoredObject) Decode() (*spec.Object, error) {
	return decodeObject(o.Kind, o.Name, o.Labels, o.Annotations, o.Spec)
}

func decodeObject(kind spec.Kind, name string, labels, annotations map[string]string, raw json.RawMessage) (*spec.Object, error) {
	v := spec.NewSpec(kind)
	if v == nil {
		return nil, fmt.Errorf("%s/%s: unknown kind", kind, name)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, fmt.Errorf("%s/%s: decode stored spec: %w", kind, name, err)
	}
	return &spec.Object{Kind: kind, Name: name, Labels: labels, Annotations: annotations, Spec: v}, nil
}

// ObjectQuery selects objects for ListObjects. Zero fields do not filter.
type ObjectQuery struct {
	Kind spec.Kind
	// Labels must all be present with these values.
	Labels     map[string]string
	NamePrefix string
	// After is the cursor returned as next by the previous page: with Kind
	// set, the last name seen; otherwise "Kind/name".
	After string
	// Limit is the page size: default 100, at most 1000.
	Limit int
}

// Page sizes of ListObjects.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// StoredHashes returns the hash column of every object: the hashes as last
// written, for planning.
func (s *Store) StoredHashes(ctx context.Context) (map[spec.Key]string, error) {
	rows, err := s.pool.Query(ctx, "SELECT kind, name, hash FROM objects")
	if err != nil {
		return nil, fmt.Errorf("store: stored hashes: %w", err)
	}
	defer rows.Close()
	out := make(map[spec.Key]string)
	for rows.Next() {
		// Text columns in the binary format are their UTF-8 bytes: skip Scan.
		v := rows.RawValues()
		out[spec.Key{Kind: spec.Kind(v[0]), Name: string(v[1])}] = string(v[2])
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: stored hashes: %w", err)
	}
	return out, nil
}

// ContentHashes returns every object's hash recomputed from its stored
// content (labels, annotations, spec), the way spec.Object.Hash computes it,
// and how many rows it differs from the hash column for (StoredHashes) in:
// exactly the rows edited out of band. Planning against it makes the next
// Apply repair such rows.
//
// Hashing dominates; rows are hashed in batches on every CPU while later
// rows are still being read.
func (s *Store) ContentHashes(ctx context.Context) (map[spec.Key]string, int, error) {
	rows, err := s.pool.Query(ctx, "SELECT kind, name, labels, annotations, spec, hash FROM objects")
	if err != nil {
		return nil, 0, fmt.Errorf("store: content hashes: %w", err)
	}
	defer rows.Close()

	const batchSize = 256
	batches := make(chan []contentRow)
	results := make(chan contentResult)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for batch := range batches {
				results <- hashBatch(batch)
			}
		})
	}
	go func() { wg.Wait(); close(results) }()

	collected := make(chan error, 1)
	out := make(map[spec.Key]string)
	drifted := 0
	go func() {
		var firstErr error
		for r := range results {
			if r.err != nil && firstErr == nil {
				firstErr = r.err
			}
			for i, k := range r.keys {
				out[k] = r.hashes[i]
			}
			drifted += r.drifted
		}
		collected <- firstErr
	}()

	batch := make([]contentRow, 0, batchSize)
	var kind, name string
	for rows.Next() {
		var r contentRow
		if err = rows.Scan(&kind, &name, &r.labels, &r.annotations, &r.spec, &r.column); err != nil {
			break
		}
		r.key = spec.Key{Kind: spec.Kind(kind), Name: name}
		if batch = append(batch, r); len(batch) == batchSize {
			batches <- batch
			batch = make([]contentRow, 0, batchSize)
		}
	}
	if len(batch) > 0 && err == nil {
		batches <- batch
	}
	close(batches)
	hashErr := <-collected
	if err == nil {
		err = rows.Err()
	}
	if err != nil {
		return nil, 0, fmt.Errorf("store: content hashes: %w", err)
	}
	if hashErr != nil {
		return nil, 0, fmt.Errorf("store: %w", hashErr)
	}
	return out, drifted, nil
}

// contentRow is one row's JSON columns and hash column as read.
type contentRow struct {
	key                       spec.Key
	labels, annotations, spec []byte
	column                    string
}

type contentResult struct {
	keys    []spec.Key
	hashes  []string
	drifted int // rows whose content hash is not their hash column
	err     error
}

func hashBatch(batch []contentRow) contentResult {
	res := contentResult{keys: make([]spec.Key, 0, len(batch)), hashes: make([]string, 0, len(batch))}
	for _, r := range batch {
		h, err := contentHash(r.labels, r.annotations, r.spec)
		if err != nil {
			res.err = fmt.Errorf("content hash of %s: %w", r.key, err)
			return res
		}
		res.keys, res.hashes = append(res.keys, r.key), append(res.hashes, h)
		if h != r.column {
			res.drifted++
		}
	}
	return res
}

// contentHash is spec.Object.Hash of a row's JSON columns.
func contentHash(labels, annotations, specJSON []byte) (string, error) {
	var c spec.Content
	if err := json.Unmarshal(labels, &c.Labels); err != nil {
		return "", fmt.Errorf("labels: %w", err)
	}
	if err := json.Unmarshal(annotations, &c.Annotations); err != nil {
		return "", fmt.Errorf("annotations: %w", err)
	}
	c.Spec = json.RawMessage(specJSON)
	b, err := spec.CanonicalJSON(c)
	if err != nil {
		return "", err
	}
	return spec.HashBytes(b), nil
}

const objectColumns = `kind, name, labels, annotations, spec, hash, generation,
	source_file, source_line, coalesce(revision_id, 0), created_at, updated_at`

// GetObject returns one object, or an error wrapping ErrNotFound.
func (s *Store) GetObject(ctx context.Context, kind spec.Kind, name string) (StoredObject, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+objectColumns+" FROM objects WHERE kind = $1 AND name = $2",
		string(kind), name)
	if err != nil {
		return StoredObject{}, fmt.Errorf("store: get %s/%s: %w", kind, name, err)
	}
	o, err := pgx.CollectExactlyOneRow(rows, scanObject)
	if errors.Is(err, pgx.ErrNoRows) {
		return StoredObject{}, fmt.Errorf("store: %s/%s: %w", kind, name, ErrNotFound)
	}
	if err != nil {
		return StoredObject{}, fmt.Errorf("store: get %s/%s: %w", kind, name, err)
	}
	return o, nil
}

// ListObjects returns one page of the objects matching q, ordered by kind
// and name, and the cursor for the next page ("" on the last page).
func (s *Store) ListObjects(ctx context.Context, q ObjectQuery) ([]StoredObject, string, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	limit = min(limit, MaxPageSize)

	var where []string
	var args []any
	cond := func(format string, values ...any) {
		placeholders := make([]any, len(values))
		for i, v := range values {
			args = append(args, v)
			placeholders[i] = fmt.Sprintf("$%d", len(args))
		}
		where = append(where, fmt.Sprintf(format, placeholders...))
	}
	if q.Kind != "" {
		cond("kind = %s", string(q.Kind))
	}
	if len(q.Labels) > 0 {
		b, err := json.Marshal(q.Labels)
		if err != nil {
			return nil, "", fmt.Errorf("store: list objects: labels: %w", err)
		}
		cond("labels @> %s::jsonb", string(b))
	}
	if q.NamePrefix != "" {
		// Names are in the "C" collation, so a prefix is a byte range that
		// the primary key index serves; starts_with keeps it exact.
		cond("starts_with(name, %s)", q.NamePrefix)
		cond("name >= %s", q.NamePrefix)
		if upper, ok := prefixUpperBound(q.NamePrefix); ok {
			cond("name < %s", upper)
		}
	}
	if q.After != "" {
		if q.Kind != "" {
			cond("name > %s", q.After)
		} else {
			kind, name, ok := strings.Cut(q.After, "/")
			if !ok {
				return nil, "", fmt.Errorf("store: list objects: invalid cursor %q: want KIND/NAME when no kind is given", q.After)
			}
			cond("(kind, name) > (%s, %s)", kind, name)
		}
	}
	sql := "SELECT " + objectColumns + " FROM objects"
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += fmt.Sprintf(" ORDER BY kind, name LIMIT %d", limit+1)

	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list objects: %w", err)
	}
	objs, err := pgx.CollectRows(rows, scanObject)
	if err != nil {
		return nil, "", fmt.Errorf("store: list objects: %w", err)
	}
	if len(objs) <= limit {
		return objs, "", nil
	}
	objs = objs[:limit]
	last := objs[limit-1]
	next := last.Name
	if q.Kind == "" {
		next = string(last.Kind) + "/" + last.Name
	}
	return objs, next, nil
}

func scanObject(row pgx.CollectableRow) (StoredObject, error) {
	var o StoredObject
	var kind string
	var specJSON []byte
	var line int32
	err := row.Scan(&kind, &o.Name, &o.Labels, &o.Annotations, &specJSON, &o.Hash, &o.Generation,
		&o.SourceFile, &line, &o.RevisionID, &o.CreatedAt, &o.UpdatedAt)
	o.Kind, o.Spec, o.SourceLine = spec.Kind(kind), json.RawMessage(specJSON), int(line)
	return o, err
}

// prefixUpperBound is the least string greater than every string starting
// with prefix, in byte order, when that is simple to get right: the last
// byte is ASCII below DEL, so incrementing it keeps the string valid UTF-8.
func prefixUpperBound(prefix string) (string, bool) {
	last := prefix[len(prefix)-1]
	if last >= 0x7f {
		return "", false
	}
	return prefix[:len(prefix)-1] + string(rune(last+1)), true
}

// ObjectLabels returns the labels of the applied objects of kind named in
// names, by name; names without an object are absent. Notifications route
// alerts by the labels of their subjects with it.
func (s *Store) ObjectLabels(ctx context.Context, kind spec.Kind, names []string) (map[string]map[string]string, error) {
	out := make(map[string]map[string]string, len(names))
	if len(names) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, "SELECT name, labels FROM objects WHERE kind = $1 AND name = ANY($2)", string(kind), names)
	if err != nil {
		return nil, fmt.Errorf("store: labels of %s objects: %w", kind, err)
	}
	var name string
	var labels map[string]string
	_, err = pgx.ForEachRow(rows, []any{&name, &labels}, func() error {
		out[name] = labels
		labels = nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: labels of %s objects: %w", kind, err)
	}
	return out, nil
}

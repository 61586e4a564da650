package bench

import (
	"encoding/json"
	"fmt"

	"github.com/certops/certops/spec"
)

// FloorColumns are the columns of the objects table that the floor's COPY
// fills, in the order of FloorRows' values: the ones the store's own COPY
// fills, less revision_id.
func FloorColumns() []string {
	return []string{"kind", "name", "labels", "annotations", "spec", "hash", "source_file", "source_line"}
}

// FloorRows loads the fleet at dir and renders every object (issuers,
// agents, certificates) as a row of FloorColumns, spec as its canonical
// JSON: the rows a full reconcile writes, built before any timer starts.
// The floor benchmarks and the bench/serve harness both COPY these rows.
func FloorRows(dir string) ([][]any, error) {
	st, err := spec.LoadDir(dir)
	if err != nil {
		return nil, err
	}
	objs := st.Sorted()
	rows := make([][]any, len(objs))
	for i, o := range objs {
		labels := []byte("{}")
		if len(o.Labels) > 0 {
			if labels, err = json.Marshal(o.Labels); err != nil {
				return nil, fmt.Errorf("%s: labels: %w", o.Key(), err)
			}
		}
		specJSON, err := spec.CanonicalJSON(o.Spec)
		if err != nil {
			return nil, fmt.Errorf("%s: spec: %w", o.Key(), err)
		}
		rows[i] = []any{string(o.Kind), o.Name, labels, []byte("{}"), specJSON, o.Hash(), o.Source.File, int32(o.Source.Line)}
	}
	return rows, nil
}

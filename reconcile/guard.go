package reconcile

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// AllowPruneFile is the file, at the root of the config path, by which a
// repository allows a revision to delete more objects than the prune guard
// lets through. Its content is a number (the most objects one revision may
// delete) or "all". Being a file in the repository, it is reviewed in the
// pull request like any other change; remove it again afterwards.
const AllowPruneFile = ".certops-allow-prune"

// PruneGuard refuses revisions that delete a large part of a kind at once —
// the usual symptom of a bad merge, a wrong path or a truncated repository.
type PruneGuard struct {
	// MaxFraction of a kind's stored objects one revision may delete (default 0.25).
	MaxFraction float64
	// Handful is the number of deletions per kind always allowed (default 5).
	Handful int
}

// withDefaults fills zero fields: by default a revision is refused when it
// deletes more than 25% of a kind and more than 5 objects of it.
func (g PruneGuard) withDefaults() PruneGuard {
	if g.MaxFraction <= 0 {
		g.MaxFraction = 0.25
	}
	if g.Handful <= 0 {
		g.Handful = 5
	}
	return g
}

// ReadAllowPrune reads AllowPruneFile from the config tree: -1 when absent,
// the number of deletions allowed, or a very large number for "all".
func ReadAllowPrune(fsys fs.FS) (int, error) {
	b, err := fs.ReadFile(fsys, AllowPruneFile)
	if errors.Is(err, fs.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("read %s: %w", AllowPruneFile, err)
	}
	v := strings.TrimSpace(string(b))
	if strings.EqualFold(v, "all") {
		return int(^uint(0) >> 1), nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return -1, fmt.Errorf("%s: want a number of deletions or \"all\", got %q", AllowPruneFile, v)
	}
	return n, nil
}

// Check returns a description of every kind whose deletions exceed the guard,
// or nil when the plan may proceed. stored holds the stored objects' keys;
// allowed is what ReadAllowPrune returned.
func (g PruneGuard) Check(plan state.Plan, stored map[spec.Key]string, allowed int) []string {
	g = g.withDefaults()
	storedPerKind := map[spec.Kind]int{}
	for k := range stored {
		storedPerKind[k.Kind]++
	}
	total := 0
	var over []string
	for kind, c := range plan.Counts() {
		if c.Delete == 0 {
			continue
		}
		total += c.Delete
		limit := int(g.MaxFraction * float64(storedPerKind[kind]))
		if c.Delete > g.Handful && c.Delete > limit {
			over = append(over, fmt.Sprintf("%s: %d of %d would be deleted (guard: more than %d and more than %.0f%%)",
				kind, c.Delete, storedPerKind[kind], g.Handful, g.MaxFraction*100))
		}
	}
	if len(over) == 0 || (allowed >= 0 && total <= allowed) {
		return nil
	}
	sort.Strings(over)
	return over
}

package gitsource

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ChangedFiles returns the files under Config.Path that differ between the
// commits from and to (full or abbreviated hashes, or any revision Resolve
// accepts): added, modified and deleted files, a rename being reported as
// the deletion of the old path and the addition of the new one. Paths are
// slash-separated, relative to Config.Path, sorted and unique. A symlink counts
// as a file (its target text is its content); submodules are ignored.
//
// The diff compares tree hashes and descends only into subtrees whose hash
// differs, so its cost is proportional to the change, not to the repository.
// If from is not in the clone (for example after a force-push and a restart
// with an in-memory clone) the error says so and the caller should fall back
// to a full reconcile.
func (r *Repo) ChangedFiles(from, to string) ([]string, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	fromCommit, err := r.commit(from)
	if err != nil {
		return nil, fmt.Errorf("gitsource: changed files: %w", err)
	}
	toCommit, err := r.commit(to)
	if err != nil {
		return nil, fmt.Errorf("gitsource: changed files: %w", err)
	}
	a, err := r.subtree(fromCommit.TreeHash, r.base)
	if err != nil {
		return nil, fmt.Errorf("gitsource: changed files in %s: %w", fromCommit.Hash, err)
	}
	b, err := r.subtree(toCommit.TreeHash, r.base)
	if err != nil {
		return nil, fmt.Errorf("gitsource: changed files in %s: %w", toCommit.Hash, err)
	}
	d := differ{r: r}
	if err := d.diff("", a, b); err != nil {
		return nil, fmt.Errorf("gitsource: changed files %s..%s: %w", fromCommit.Hash, toCommit.Hash, err)
	}
	slices.Sort(d.changed)
	return slices.Compact(d.changed), nil
}

// subtree returns the hash of the tree at dir inside root, or the zero hash if
// there is no directory there. The caller holds mu.
func (r *Repo) subtree(root plumbing.Hash, dir string) (plumbing.Hash, error) {
	h := root
	if dir == "" {
		return h, nil
	}
	for _, name := range strings.Split(dir, "/") {
		tree, err := object.GetTree(r.repo.Storer, h)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("read tree %s: %w", h, err)
		}
		e, err := tree.FindEntry(name)
		if errors.Is(err, object.ErrEntryNotFound) || (err == nil && e.Mode != filemode.Dir) {
			return plumbing.ZeroHash, nil
		}
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("read tree %s: %w", h, err)
		}
		h = e.Hash
	}
	return h, nil
}

type differ struct {
	r       *Repo
	changed []string
}

// diff compares trees a and b (either may be zero: absent) at prefix.
func (d *differ) diff(prefix string, a, b plumbing.Hash) error {
	if a == b {
		return nil
	}
	ea, err := d.entries(a)
	if err != nil {
		return err
	}
	eb, err := d.entries(b)
	if err != nil {
		return err
	}
	// Both lists are in git order; merging by the same comparison visits
	// each name once.
	i, j := 0, 0
	for i < len(ea) || j < len(eb) {
		var x, y *object.TreeEntry
		switch {
		case j == len(eb):
			x = &ea[i]
		case i == len(ea):
			y = &eb[j]
		default:
			switch c := strings.Compare(ea[i].Name, eb[j].Name); {
			case c < 0:
				x = &ea[i]
			case c > 0:
				y = &eb[j]
			default:
				x, y = &ea[i], &eb[j]
			}
		}
		if x != nil {
			i++
		}
		if y != nil {
			j++
		}
		if err := d.entry(prefix, x, y); err != nil {
			return err
		}
	}
	return nil
}

// entry compares one name present in a (x), b (y) or both.
func (d *differ) entry(prefix string, x, y *object.TreeEntry) error {
	if x != nil && y != nil && x.Hash == y.Hash && x.Mode == y.Mode {
		return nil
	}
	var subA, subB plumbing.Hash
	var fileChanged bool
	for k, e := range []*object.TreeEntry{x, y} {
		switch {
		case e == nil || e.Mode == filemode.Submodule:
		case e.Mode == filemode.Dir && k == 0:
			subA = e.Hash
		case e.Mode == filemode.Dir:
			subB = e.Hash
		default:
			fileChanged = true
		}
	}
	name := x
	if name == nil {
		name = y
	}
	p := path.Join(prefix, name.Name)
	if fileChanged {
		d.changed = append(d.changed, p)
	}
	if !subA.IsZero() || !subB.IsZero() {
		return d.diff(p, subA, subB)
	}
	return nil
}

// entries returns a tree's entries sorted by name; the zero hash is an empty
// tree.
func (d *differ) entries(h plumbing.Hash) ([]object.TreeEntry, error) {
	if h.IsZero() {
		return nil, nil
	}
	tree, err := object.GetTree(d.r.repo.Storer, h)
	if err != nil {
		return nil, fmt.Errorf("read tree %s: %w", h, err)
	}
	entries := slices.Clone(tree.Entries)
	slices.SortFunc(entries, func(a, b object.TreeEntry) int { return strings.Compare(a.Name, b.Name) })
	return entries, nil
}

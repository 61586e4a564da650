package reconcile

import (
	"errors"
	"io/fs"

	"github.com/certops/certops/spec"
)

// Loader loads the desired state of successive revisions, re-parsing only
// the files that changed since the previous load. Whole-revision validation
// (duplicates, references) always runs over every object, so an incremental
// load gives exactly what a full load of the same tree gives.
type Loader struct {
	files  spec.Files
	commit string // the commit the cache reflects; "" = empty cache
}

// Commit is the commit the cache reflects, or "" when nothing is cached.
func (l *Loader) Commit() string { return l.commit }

// Reset forgets the cache; the next Load is a full load.
func (l *Loader) Reset() { l.files, l.commit = nil, "" }

// Load parses the revision commit from fsys. When changed is non-nil, only
// those paths (slash-separated, relative to the config root) are re-read and
// the rest comes from the cache, which must reflect the commit the diff was
// taken from. changed == nil means a full load. It returns the state, or
// every error of the revision.
func (l *Loader) Load(fsys fs.FS, commit string, changed []string) (spec.State, spec.ErrorList) {
	var files spec.Files
	if changed == nil || l.files == nil {
		files = spec.ReadFiles(fsys)
	} else {
		files = make(spec.Files, len(l.files)+len(changed))
		for p, f := range l.files {
			files[p] = f
		}
		for _, p := range changed {
			delete(files, p)
			if !spec.IsConfigFile(p) {
				continue
			}
			if _, err := fs.Lstat(fsys, p); errors.Is(err, fs.ErrNotExist) {
				continue // deleted in this revision
			}
			files[p] = spec.ReadFile(fsys, p)
		}
	}
	l.files, l.commit = files, commit
	st, err := files.State()
	var errs spec.ErrorList
	if errors.As(err, &errs) {
		return spec.State{}, errs
	}
	return st, nil
}

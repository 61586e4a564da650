package reconcile

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/certops/certops/spec"
)

// parsedFile is the cached parse of one config file.
type parsedFile struct {
	objects []*spec.Object
	errs    spec.ErrorList
}

// Loader loads the desired state of successive revisions, re-parsing only
// the files that changed since the previous load. Whole-revision validation
// (duplicates, references) always runs over every object, so an incremental
// load gives exactly what a full load of the same tree gives.
type Loader struct {
	files  map[string]parsedFile
	commit string // the commit the cache reflects; "" = empty cache
}

// Commit is the commit the cache reflects, or "" when nothing is cached.
func (l *Loader) Commit() string { return l.commit }

// Reset forgets the cache; the next Load is a full load.
func (l *Loader) Reset() { l.files, l.commit = nil, "" }

// Load parses the revision commit from fsys. When changed is non-nil, only
// those paths (slash-separated, relative to the config root) are re-read and
// the rest comes from the cache, which must reflect the commit the diff was
// taken from. changed == nil means a full load. It returns the state and
// every error of the revision; the state is only meaningful when errs is empty.
func (l *Loader) Load(fsys fs.FS, commit string, changed []string) (spec.State, spec.ErrorList, error) {
	var files map[string]parsedFile
	if changed == nil || l.files == nil {
		paths, err := ConfigFiles(fsys)
		if err != nil {
			return spec.State{}, nil, err
		}
		files = make(map[string]parsedFile, len(paths))
		for _, p := range paths {
			files[p] = parse(fsys, p)
		}
	} else {
		files = make(map[string]parsedFile, len(l.files)+len(changed))
		for p, f := range l.files {
			files[p] = f
		}
		for _, p := range changed {
			delete(files, p)
			if !IsConfigFile(p) {
				continue
			}
			if _, err := fs.Stat(fsys, p); errors.Is(err, fs.ErrNotExist) {
				continue // deleted in this revision
			}
			files[p] = parse(fsys, p)
		}
	}
	l.files, l.commit = files, commit
	return assemble(files)
}

// assemble validates the union of parsed files as one revision.
func assemble(files map[string]parsedFile) (spec.State, spec.ErrorList, error) {
	var errs spec.ErrorList
	n := 0
	for _, f := range files {
		errs = append(errs, f.errs...)
		n += len(f.objects)
	}
	all := make([]*spec.Object, 0, n)
	for _, f := range files {
		all = append(all, f.objects...)
	}
	errs = append(errs, spec.Validate(all)...)
	if len(errs) > 0 {
		errs.Sort()
		return spec.State{}, errs, nil
	}
	st := spec.State{Objects: make(map[spec.Key]*spec.Object, len(all))}
	for _, o := range all {
		st.Objects[o.Key()] = o
	}
	return st, nil, nil
}

func parse(fsys fs.FS, p string) parsedFile {
	data, err := fs.ReadFile(fsys, p)
	if err != nil {
		return parsedFile{errs: spec.ErrorList{{File: p, Message: readError(err)}}}
	}
	objs, errs := spec.ParseFile(p, data)
	return parsedFile{objects: objs, errs: errs}
}

// readError turns a file-system error into a user-facing message.
func readError(err error) string {
	msg := err.Error()
	if strings.Contains(msg, "escapes") || strings.Contains(msg, "outside the repository") {
		return "symlink points outside the repository"
	}
	return "cannot read file: " + msg
}

// IsConfigFile reports whether a path names a desired-state file: a *.yaml
// or *.yml file not inside a directory whose name starts with a dot.
func IsConfigFile(p string) bool {
	ext := path.Ext(p)
	if ext != ".yaml" && ext != ".yml" {
		return false
	}
	for _, part := range strings.Split(path.Dir(p), "/") {
		if strings.HasPrefix(part, ".") && part != "." {
			return false
		}
	}
	return true
}

// ConfigFiles lists every desired-state file of fsys in lexical order.
func ConfigFiles(fsys fs.FS) ([]string, error) {
	var out []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir
			}
			return nil
		}
		if IsConfigFile(p) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list config files: %w", err)
	}
	return out, nil
}

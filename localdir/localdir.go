// Package localdir is a config source over a plain directory, for
// development and for repositories synced by other tools: every poll takes a
// snapshot of the config files, names it by a hash of their content, and a
// file watcher (fsnotify) wakes the reconciler as soon as a file changes.
package localdir

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing/fstest"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// Ref is the ref name revisions of a directory carry: "dir@sha1:<hash>".
const Ref = "dir"

// Source snapshots a directory. Revisions are content hashes, so an
// unchanged directory yields the same revision and costs no re-parse.
type Source struct {
	dir string

	mu        sync.Mutex
	snapshots map[string]snapshot // by commit; the last two are kept
	order     []string
}

type snapshot struct {
	fsys   snapFS
	hashes map[string]string // path → sha1 of content
}

// snapFS is an in-memory copy of the config files; a file that could not be
// read keeps its read error, which the loader reports against that file.
type snapFS struct {
	fstest.MapFS
	errs map[string]error
}

func (f snapFS) Open(name string) (fs.File, error) {
	if err := f.errs[name]; err != nil {
		return nil, err
	}
	return f.MapFS.Open(name)
}

func (f snapFS) ReadFile(name string) ([]byte, error) {
	if err := f.errs[name]; err != nil {
		return nil, err
	}
	return f.MapFS.ReadFile(name)
}

// New returns a Source over dir.
func New(dir string) (*Source, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("config directory: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("config directory %s: not a directory", dir)
	}
	return &Source{dir: dir, snapshots: map[string]snapshot{}}, nil
}

// Head snapshots the directory and returns its revision.
func (s *Source) Head(ctx context.Context) (state.Revision, error) {
	snap, err := s.read()
	if err != nil {
		return state.Revision{}, err
	}
	commit := snap.id()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.snapshots[commit]; !ok {
		s.snapshots[commit] = snap
		s.order = append(s.order, commit)
		if len(s.order) > 2 {
			delete(s.snapshots, s.order[0])
			s.order = s.order[1:]
		}
	}
	return state.Revision{Ref: Ref, Commit: commit, Author: "local directory", Message: s.dir, Time: time.Now().UTC()}, nil
}

// FS returns the snapshot of a revision returned by Head.
func (s *Source) FS(ctx context.Context, commit string) (fs.FS, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.snapshots[commit]
	if !ok {
		return nil, fmt.Errorf("revision %s is no longer available", commit)
	}
	return snap.fsys, nil
}

// ChangedFiles compares two snapshots file by file.
func (s *Source) ChangedFiles(ctx context.Context, from, to string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, okA := s.snapshots[from]
	b, okB := s.snapshots[to]
	if !okA || !okB {
		return nil, errors.New("snapshot no longer available")
	}
	var out []string
	for p, h := range b.hashes {
		if a.hashes[p] != h {
			out = append(out, p)
		}
	}
	for p := range a.hashes {
		if _, ok := b.hashes[p]; !ok {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

// read copies every config file (and the prune-allow file) into memory
// through an os.Root, which refuses symlinks that leave the directory; such
// a file is kept as an unreadable entry so the loader reports it.
func (s *Source) read() (snapshot, error) {
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		return snapshot{}, fmt.Errorf("open config directory: %w", err)
	}
	defer root.Close()
	fsys := root.FS()
	var paths []string
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && p != "." && strings.HasPrefix(d.Name(), "."):
			return fs.SkipDir
		case !d.IsDir() && spec.IsConfigFile(p):
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return snapshot{}, fmt.Errorf("list config files: %w", err)
	}
	paths = append(paths, reconcile.AllowPruneFile)
	snap := snapshot{fsys: snapFS{MapFS: fstest.MapFS{}, errs: map[string]error{}}, hashes: map[string]string{}}
	for _, p := range paths {
		info, err := fs.Stat(fsys, p)
		if errors.Is(err, fs.ErrNotExist) && p == reconcile.AllowPruneFile {
			continue
		}
		if err == nil && info.Size() > spec.MaxFileSize {
			// Leave the size check to the loader: keep a placeholder just over the limit.
			snap.fsys.MapFS[p] = &fstest.MapFile{Data: make([]byte, spec.MaxFileSize+1)}
			snap.hashes[p] = "oversize"
			continue
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			// An escaping symlink or an unreadable file: the loader reports it.
			snap.fsys.MapFS[p] = &fstest.MapFile{}
			snap.fsys.errs[p] = err
			snap.hashes[p] = "error:" + err.Error()
			continue
		}
		sum := sha1.Sum(data)
		snap.fsys.MapFS[p] = &fstest.MapFile{Data: data, Mode: 0o644}
		snap.hashes[p] = hex.EncodeToString(sum[:])
	}
	return snap, nil
}

// id is the snapshot's revision: a SHA-1 over the sorted path/hash pairs.
func (s snapshot) id() string {
	paths := make([]string, 0, len(s.hashes))
	for p := range s.hashes {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	h := sha1.New()
	for _, p := range paths {
		fmt.Fprintf(h, "%s\x00%s\n", p, s.hashes[p])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Watch watches dir and every directory below it (except .git
// directories), adding directories created later, and sends on the returned
// channel once a burst of changes has been quiet for debounce (200ms if
// debounce <= 0). The channel has a buffer of one and sends never block: a
// pending signal stands for any number of changes. It is closed when ctx is
// done. Pure attribute changes (chmod) are ignored.
func Watch(ctx context.Context, dir string, debounce time.Duration, logger *slog.Logger) (<-chan struct{}, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if debounce <= 0 {
		debounce = 200 * time.Millisecond
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("localdir: watch %s: %w", dir, err)
	}
	if err := addTree(w, dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("localdir: watch %s: %w", dir, err)
	}
	out := make(chan struct{}, 1)
	go runWatch(ctx, w, out, debounce, logger.With("dir", dir))
	return out, nil
}

func runWatch(ctx context.Context, w *fsnotify.Watcher, out chan<- struct{}, debounce time.Duration, logger *slog.Logger) {
	defer close(out)
	defer w.Close()
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if filepath.Base(ev.Name) == ".git" || ev.Op == fsnotify.Chmod {
				continue
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
					// Files created in the new directory before the watch was
					// added are covered by this event's signal.
					if err := addTree(w, ev.Name); err != nil {
						logger.Warn("cannot watch new directory", "path", ev.Name, "err", err)
					}
				}
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			logger.Warn("watch error", "err", err)
			timer.Reset(debounce) // events may have been lost: signal to be safe
		case <-timer.C:
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}
}

// addTree adds root and its subdirectories, skipping .git, to w.
func addTree(w *fsnotify.Watcher, root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != root && errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if d.Name() == ".git" {
			return filepath.SkipDir
		}
		return w.Add(p)
	})
}

// IsPlainDir reports whether p is a local directory that is not a git
// repository (neither a work tree with .git nor a bare repository): what
// `certops serve --repo` watches with this package rather than cloning.
func IsPlainDir(p string) bool {
	if strings.Contains(p, "://") {
		return false
	}
	info, err := os.Stat(p)
	if err != nil || !info.IsDir() {
		return false
	}
	if _, err := os.Stat(filepath.Join(p, ".git")); err == nil {
		return false
	}
	if _, err := os.Stat(filepath.Join(p, "HEAD")); err == nil {
		if _, err := os.Stat(filepath.Join(p, "objects")); err == nil {
			return false
		}
	}
	return true
}

// Open returns the directory as a source, watched (see Watch, with the
// default debounce) until ctx ends.
func Open(ctx context.Context, dir string, logger *slog.Logger) (*Source, <-chan struct{}, error) {
	src, err := New(dir)
	if err != nil {
		return nil, nil, err
	}
	changes, err := Watch(ctx, dir, 0, logger)
	if err != nil {
		return nil, nil, err
	}
	return src, changes, nil
}

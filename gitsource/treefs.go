package gitsource

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// maxSymlinkHops bounds symlink resolution, as ELOOP does.
const maxSymlinkHops = 40

// FS returns a read-only file system over the tree of commit (a full or
// abbreviated hash, or any revision Resolve accepts), rooted at Config.Path.
// It implements fs.ReadDirFS, fs.ReadFileFS, fs.StatFS and fs.ReadLinkFS, so
// fs.WalkDir, fs.Glob and fs.Sub work on it. ModTime of every file is the
// commit's committer time.
//
// Symlinks behave as in os.DirFS: ReadDir (and so fs.WalkDir) reports a
// symlink as an entry of type fs.ModeSymlink without following it, while
// Open, ReadFile and Stat follow it. A target that resolves inside the
// repository (it may leave Config.Path) is followed; an absolute target or one
// with too many ".." fails with an error wrapping ErrSymlinkOutside ("symlink
// points outside the repository"). Submodule entries are left out entirely.
func (r *Repo) FS(commit string) (fs.FS, error) {
	r.mu.RLock()
	c, err := r.commit(commit)
	r.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	t := &treeFS{
		r:       r,
		root:    c.TreeHash,
		base:    r.base,
		modTime: c.Committer.When,
		dirs:    make(map[plumbing.Hash]*dirIndex),
	}
	n, err := t.resolve("stat", ".", true)
	if err != nil {
		return nil, fmt.Errorf("gitsource: commit %s: %w", c.Hash, err)
	}
	if !n.isDir() {
		return nil, fmt.Errorf("gitsource: commit %s: path %q is not a directory", c.Hash, r.base)
	}
	return t, nil
}

// treeFS is the fs.FS over one commit. Trees are immutable, so the directory
// indexes it builds are cached for its lifetime.
type treeFS struct {
	r       *Repo
	root    plumbing.Hash
	base    string
	modTime time.Time

	mu   sync.Mutex
	dirs map[plumbing.Hash]*dirIndex
}

// node is one resolved tree entry.
type node struct {
	name string
	mode filemode.FileMode
	hash plumbing.Hash
}

func (n node) isDir() bool { return n.mode == filemode.Dir }

// dirIndex is a tree's entries sorted by name (the order fs.ReadDir promises,
// which differs from git's order for directories) plus a name lookup.
type dirIndex struct {
	entries []object.TreeEntry
	byName  map[string]int
}

var (
	_ fs.ReadDirFS  = (*treeFS)(nil)
	_ fs.ReadFileFS = (*treeFS)(nil)
	_ fs.StatFS     = (*treeFS)(nil)
	_ fs.ReadLinkFS = (*treeFS)(nil)
)

func (t *treeFS) Open(name string) (fs.File, error) {
	n, err := t.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	if n.isDir() {
		return &dirFile{t: t, n: n, path: name}, nil
	}
	data, err := t.readBlob(n.hash)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	info := t.info(n)
	info.size = int64(len(data))
	return &file{info: info, Reader: bytes.NewReader(data)}, nil
}

func (t *treeFS) ReadFile(name string) ([]byte, error) {
	n, err := t.resolve("readfile", name, true)
	if err != nil {
		return nil, err
	}
	if n.isDir() {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: errors.New("is a directory")}
	}
	data, err := t.readBlob(n.hash)
	if err != nil {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
	}
	return data, nil
}

func (t *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	n, err := t.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	d, err := t.dir(n.hash)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, 0, len(d.entries))
	for _, e := range d.entries {
		out = append(out, fs.FileInfoToDirEntry(t.info(node{name: e.Name, mode: e.Mode, hash: e.Hash})))
	}
	return out, nil
}

func (t *treeFS) Stat(name string) (fs.FileInfo, error) {
	return t.stat("stat", name, true)
}

// Lstat is Stat without following a final symlink.
func (t *treeFS) Lstat(name string) (fs.FileInfo, error) {
	return t.stat("lstat", name, false)
}

// ReadLink returns a symlink's target as stored in the tree.
func (t *treeFS) ReadLink(name string) (string, error) {
	n, err := t.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	if n.mode != filemode.Symlink {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: errors.New("not a symlink")}
	}
	target, err := t.readBlob(n.hash)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return string(target), nil
}

func (t *treeFS) stat(op, name string, follow bool) (fs.FileInfo, error) {
	n, err := t.resolve(op, name, follow)
	if err != nil {
		return nil, err
	}
	info := t.info(n)
	if err := info.loadSize(); err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	return info, nil
}

// resolve finds the entry for name, following symlinks in directory
// components always and in the last component if follow is set.
func (t *treeFS) resolve(op, name string, follow bool) (node, error) {
	if !fs.ValidPath(name) {
		return node{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	full := path.Join(t.base, name)
	if full == "." {
		full = ""
	}
	fail := func(err error) (node, error) { return node{}, &fs.PathError{Op: op, Path: name, Err: err} }

	for range maxSymlinkHops {
		var comps []string
		if full != "" {
			comps = strings.Split(full, "/")
		}
		cur := node{name: path.Base(name), mode: filemode.Dir, hash: t.root}
		restarted := false
		for i, c := range comps {
			if !cur.isDir() {
				return fail(fs.ErrNotExist)
			}
			d, err := t.dir(cur.hash)
			if err != nil {
				return fail(err)
			}
			idx, ok := d.byName[c]
			if !ok {
				return fail(fs.ErrNotExist)
			}
			e := d.entries[idx]
			last := i == len(comps)-1
			if e.Mode == filemode.Symlink && (!last || follow) {
				target, err := t.readBlob(e.Hash)
				if err != nil {
					return fail(err)
				}
				next, err := joinLink(strings.Join(comps[:i], "/"), string(target))
				if err != nil {
					return fail(err)
				}
				full = path.Join(next, strings.Join(comps[i+1:], "/"))
				if full == "." {
					full = ""
				}
				restarted = true
				break
			}
			cur = node{name: e.Name, mode: e.Mode, hash: e.Hash}
		}
		if !restarted {
			cur.name = path.Base(name)
			return cur, nil
		}
	}
	return fail(errors.New("too many levels of symbolic links"))
}

// joinLink resolves a symlink target relative to the directory holding the
// link (both relative to the repository root) and refuses targets leaving the
// repository.
func joinLink(dir, target string) (string, error) {
	if target == "" || path.IsAbs(target) || strings.HasPrefix(target, `\`) || (len(target) > 1 && target[1] == ':') {
		return "", fmt.Errorf("%w (target %q)", ErrSymlinkOutside, target)
	}
	p := path.Join(dir, target)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("%w (target %q)", ErrSymlinkOutside, target)
	}
	if p == "." {
		return "", nil
	}
	return p, nil
}

// dir returns the cached index of tree h, loading it on first use.
func (t *treeFS) dir(h plumbing.Hash) (*dirIndex, error) {
	t.mu.Lock()
	d, ok := t.dirs[h]
	t.mu.Unlock()
	if ok {
		return d, nil
	}
	t.r.mu.RLock()
	tree, err := object.GetTree(t.r.repo.Storer, h)
	t.r.mu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("read tree %s: %w", h, err)
	}
	d = &dirIndex{entries: make([]object.TreeEntry, 0, len(tree.Entries))}
	for _, e := range tree.Entries {
		if e.Mode == filemode.Submodule {
			continue
		}
		d.entries = append(d.entries, e)
	}
	slices.SortFunc(d.entries, func(a, b object.TreeEntry) int { return strings.Compare(a.Name, b.Name) })
	d.byName = make(map[string]int, len(d.entries))
	for i, e := range d.entries {
		d.byName[e.Name] = i
	}
	t.mu.Lock()
	t.dirs[h] = d
	t.mu.Unlock()
	return d, nil
}

func (t *treeFS) readBlob(h plumbing.Hash) ([]byte, error) {
	t.r.mu.RLock()
	defer t.r.mu.RUnlock()
	blob, err := object.GetBlob(t.r.repo.Storer, h)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", h, err)
	}
	rd, err := blob.Reader()
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", h, err)
	}
	defer rd.Close()
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", h, err)
	}
	return data, nil
}

func (t *treeFS) info(n node) *fileInfo {
	return &fileInfo{t: t, n: n, size: -1}
}

// fileInfo describes a tree entry; a blob's size is read on demand.
type fileInfo struct {
	t    *treeFS
	n    node
	size int64 // -1 until loaded
}

func (fi *fileInfo) Name() string       { return fi.n.name }
func (fi *fileInfo) ModTime() time.Time { return fi.t.modTime }
func (fi *fileInfo) IsDir() bool        { return fi.n.isDir() }
func (fi *fileInfo) Sys() any           { return nil }

func (fi *fileInfo) Mode() fs.FileMode {
	switch fi.n.mode {
	case filemode.Dir:
		return fs.ModeDir | 0o555
	case filemode.Symlink:
		return fs.ModeSymlink | 0o777
	case filemode.Executable:
		return 0o555
	default:
		return 0o444
	}
}

func (fi *fileInfo) Size() int64 {
	if fi.loadSize() != nil {
		return 0
	}
	return fi.size
}

func (fi *fileInfo) loadSize() error {
	if fi.size >= 0 {
		return nil
	}
	if fi.n.isDir() {
		fi.size = 0
		return nil
	}
	fi.t.r.mu.RLock()
	defer fi.t.r.mu.RUnlock()
	size, err := fi.t.r.repo.Storer.EncodedObjectSize(fi.n.hash)
	if err != nil {
		return fmt.Errorf("size of %s: %w", fi.n.hash, err)
	}
	fi.size = size
	return nil
}

// file is an open regular file; blobs are small configuration files, so the
// content is read whole on Open.
type file struct {
	info *fileInfo
	*bytes.Reader
}

func (f *file) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *file) Close() error               { return nil }

// dirFile is an open directory.
type dirFile struct {
	t       *treeFS
	n       node
	path    string
	entries []fs.DirEntry
	read    bool
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.t.info(d.n), nil }
func (d *dirFile) Close() error               { return nil }

func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.path, Err: errors.New("is a directory")}
}

func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.read {
		entries, err := d.t.ReadDir(d.path)
		if err != nil {
			return nil, err
		}
		d.entries, d.read = entries, true
	}
	if n <= 0 {
		out := d.entries
		d.entries = nil
		return out, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(d.entries))
	out := d.entries[:n]
	d.entries = d.entries[n:]
	return out, nil
}

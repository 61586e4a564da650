package gitsource_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/gitsource"
	"github.com/certops/certops/state"
)

func TestOpenFileURLAndPlainPath(t *testing.T) {
	u := newUpstream(t)
	u.write(map[string]string{"conf/a.yaml": "a: 1\n"})
	want := u.commit("first\n\nbody")

	for name, url := range map[string]string{"file URL": "file://" + u.dir, "plain path": u.dir} {
		t.Run(name, func(t *testing.T) {
			r := open(t, gitsource.Config{URL: url})
			rev, changed := head(t, r)
			if !changed {
				t.Error("first Head: changed = false, want true")
			}
			if diff := cmp.Diff(rev, state.Revision{
				Ref: "main", Commit: want, Author: "Alice <alice@example.com>", Message: "first\n\nbody\n", Time: rev.Time,
			}); diff != "" {
				t.Errorf("revision (-got +want):\n%s", diff)
			}
			if time.Since(rev.Time) > time.Hour {
				t.Errorf("revision time %v is not the commit time", rev.Time)
			}
			fsys, err := r.FS(rev.Commit)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := fs.ReadFile(fsys, "conf/a.yaml"); err != nil || string(got) != "a: 1\n" {
				t.Errorf("ReadFile = %q, %v", got, err)
			}
		})
	}
}

func TestRefs(t *testing.T) {
	u := newUpstream(t)
	u.write(map[string]string{"a.yaml": "v1"})
	c1 := u.commit("one")
	git(t, u.dir, "tag", "light")
	git(t, u.dir, "tag", "-a", "-m", "annotated", "annotated")
	u.write(map[string]string{"a.yaml": "v2"})
	c2 := u.commit("two")
	git(t, u.dir, "branch", "dev", c1)
	u.write(map[string]string{"a.yaml": "v3"})
	c3 := u.commit("three")

	tests := []struct{ ref, wantRef, wantCommit string }{
		{"", "main", c3},
		{"main", "main", c3},
		{"refs/heads/dev", "dev", c1},
		{"dev", "dev", c1},
		{"light", "light", c1},
		{"annotated", "annotated", c1},
		{c2, c2, c2},
	}
	for _, tt := range tests {
		t.Run("ref="+tt.ref, func(t *testing.T) {
			r := open(t, gitsource.Config{URL: u.dir, Ref: tt.ref})
			rev, _ := head(t, r)
			if rev.Ref != tt.wantRef || rev.Commit != tt.wantCommit {
				t.Errorf("Head = %s@%s, want %s@%s", rev.Ref, rev.Commit, tt.wantRef, tt.wantCommit)
			}
		})
	}

	t.Run("pinned commit is not polled", func(t *testing.T) {
		r := open(t, gitsource.Config{URL: u.dir, Ref: c2})
		head(t, r)
		fetches := r.Fetches()
		if err := os.RemoveAll(u.dir); err != nil { // the remote is gone
			t.Fatal(err)
		}
		rev, changed := head(t, r)
		if rev.Commit != c2 || changed || r.Fetches() != fetches {
			t.Errorf("Head = %s changed=%v fetches %d→%d; want %s, false, no fetch", rev.Commit, changed, fetches, r.Fetches(), c2)
		}
	})
}

func TestUnknownRef(t *testing.T) {
	u := newUpstream(t)
	u.commit("one")
	_, err := gitsource.Open(testContext(t), gitsource.Config{URL: u.dir, Ref: "nope"}, nil)
	if err == nil || !strings.Contains(err.Error(), `ref "nope" not found`) {
		t.Errorf("Open with unknown ref: err = %v", err)
	}
}

func TestHeadPollsWithoutFetchingUntilPush(t *testing.T) {
	u := newUpstream(t)
	u.write(map[string]string{"conf/a.yaml": "a", "conf/b.yaml": "b"})
	c1 := u.commit("one")

	r := open(t, gitsource.Config{URL: "file://" + u.dir, Path: "conf"})
	if got := r.Fetches(); got != 1 {
		t.Fatalf("fetches after Open = %d, want 1", got)
	}
	rev, changed := head(t, r)
	if rev.Commit != c1 || !changed {
		t.Fatalf("first Head = %s changed=%v, want %s true", rev.Commit, changed, c1)
	}
	rev, changed = head(t, r)
	if rev.Commit != c1 || changed {
		t.Fatalf("second Head = %s changed=%v, want %s false", rev.Commit, changed, c1)
	}
	if got := r.Fetches(); got != 1 {
		t.Fatalf("fetches after unchanged polls = %d, want 1", got)
	}

	u.write(map[string]string{"conf/a.yaml": "a2", "conf/c.yaml": "c"})
	c2 := u.commit("two")
	rev, changed = head(t, r)
	if rev.Commit != c2 || !changed {
		t.Fatalf("Head after push = %s changed=%v, want %s true", rev.Commit, changed, c2)
	}
	if got := r.Fetches(); got != 2 {
		t.Errorf("fetches after push = %d, want 2", got)
	}
	changedFiles, err := r.ChangedFiles(c1, c2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(changedFiles, []string{"a.yaml", "c.yaml"}); diff != "" {
		t.Errorf("ChangedFiles (-got +want):\n%s", diff)
	}

	// A force-push back to c1 needs no fetch: the object is already here.
	git(t, u.dir, "reset", "-q", "--hard", c1)
	rev, changed = head(t, r)
	if rev.Commit != c1 || !changed || r.Fetches() != 2 {
		t.Errorf("Head after force-push = %s changed=%v fetches=%d, want %s true 2", rev.Commit, changed, r.Fetches(), c1)
	}
}

func TestCacheDirIsReused(t *testing.T) {
	u := newUpstream(t)
	u.write(map[string]string{"a.yaml": "a"})
	c1 := u.commit("one")
	cache := filepath.Join(t.TempDir(), "cache")

	r1, err := gitsource.Open(testContext(t), gitsource.Config{URL: u.dir, CacheDir: cache}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Fetches() != 1 {
		t.Errorf("first Open fetched %d times, want 1", r1.Fetches())
	}
	r1.Close()

	r2 := open(t, gitsource.Config{URL: u.dir, CacheDir: cache})
	if r2.Fetches() != 0 {
		t.Errorf("second Open over the same cache fetched %d times, want 0", r2.Fetches())
	}
	if rev, _ := head(t, r2); rev.Commit != c1 {
		t.Errorf("Head = %s, want %s", rev.Commit, c1)
	}
	if _, err := os.Stat(filepath.Join(cache, "objects")); err != nil {
		t.Errorf("cache is not a bare repository: %v", err)
	}
}

func TestChangedFiles(t *testing.T) {
	u := newUpstream(t)
	u.write(map[string]string{
		"conf/a.yaml":           "a",
		"conf/same.yaml":        "same",
		"conf/sub/b.yaml":       "b",
		"conf/sub/c.yaml":       "c",
		"conf/old.yaml":         "a file that will be renamed, long enough for rename detection\n",
		"conf/dir2file/f.yaml":  "f",
		"conf/untouched/u.yaml": "u",
		"other/x.yaml":          "x",
		"conference/y.yaml":     "y",
	})
	c1 := u.commit("one")
	if err := os.MkdirAll(filepath.Join(u.dir, "conf", "new"), 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, u.dir, "mv", "conf/old.yaml", "conf/new/renamed.yaml")
	u.write(map[string]string{
		"conf/a.yaml":          "a2",
		"conf/sub/c.yaml":      "",
		"conf/sub/deep/d.yaml": "d",
		"conf/dir2file":        "",
		"other/x.yaml":         "x2",
		"conference/y.yaml":    "y2",
	})
	u.write(map[string]string{"conf/dir2file": "now a file"})
	c2 := u.commit("two")

	r := open(t, gitsource.Config{URL: u.dir, Path: "conf"})
	got, err := r.ChangedFiles(c1, c2)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a.yaml", "dir2file", "dir2file/f.yaml", "new/renamed.yaml", "old.yaml", "sub/c.yaml", "sub/deep/d.yaml"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("ChangedFiles(c1, c2) (-got +want):\n%s", diff)
	}
	if got, err := r.ChangedFiles(c2, c1); err != nil || len(got) != len(want) {
		t.Errorf("ChangedFiles(c2, c1) = %v, %v; want the same %d paths", got, err, len(want))
	}
	if got, err := r.ChangedFiles(c2, c2); err != nil || len(got) != 0 {
		t.Errorf("ChangedFiles(c2, c2) = %v, %v; want none", got, err)
	}
	if _, err := r.ChangedFiles(strings.Repeat("1", 40), c2); err == nil {
		t.Error("ChangedFiles from an unknown commit succeeded")
	}

	// The whole repository, through OpenLocal.
	local, err := gitsource.OpenLocal(u.dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err = local.ChangedFiles("HEAD~1", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	if !contains(got, "other/x.yaml") || !contains(got, "conference/y.yaml") || !contains(got, "conf/a.yaml") {
		t.Errorf("OpenLocal ChangedFiles = %v, want paths relative to the repository root", got)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestFS(t *testing.T) {
	u := newUpstream(t)
	u.write(map[string]string{
		"conf/a.yaml":         "a: 1\n",
		"conf/sub/b.yaml":     "b: 2\n",
		"conf/sub/deep/c.yml": "c: 3\n",
		"other/x.yaml":        "x: 0\n",
		"README.md":           "hi",
	})
	u.symlink("conf/link.yaml", "a.yaml")
	u.symlink("conf/linkdir", "sub")
	u.symlink("conf/up.yaml", "../other/x.yaml")
	clean := u.commit("clean")
	// A submodule entry (mode 160000) pointing anywhere.
	git(t, u.dir, "update-index", "--add", "--cacheinfo", "160000,"+clean+",conf/submodule")
	git(t, u.dir, "commit", "-q", "-m", "submodule")
	u.symlink("conf/evil.yaml", "../../etc/passwd")
	u.symlink("conf/abs.yaml", "/etc/passwd")
	u.symlink("conf/sub/loop", "loop")
	bad := u.commit("bad links")

	r := open(t, gitsource.Config{URL: u.dir, Path: "conf"})

	t.Run("fstest", func(t *testing.T) {
		fsys, err := r.FS(clean)
		if err != nil {
			t.Fatal(err)
		}
		if err := fstest.TestFS(fsys, "a.yaml", "sub/b.yaml", "sub/deep/c.yml", "link.yaml", "up.yaml"); err != nil {
			t.Error(err)
		}
	})

	fsys, err := r.FS(bad)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("walk", func(t *testing.T) {
		var got []string
		err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			got = append(got, p+" "+d.Type().String())
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			". d---------", "a.yaml ----------", "abs.yaml L---------", "evil.yaml L---------",
			"link.yaml L---------", "linkdir L---------", "sub d---------", "sub/b.yaml ----------",
			"sub/deep d---------", "sub/deep/c.yml ----------", "sub/loop L---------", "up.yaml L---------",
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("WalkDir (-got +want):\n%s", diff)
		}
	})

	t.Run("symlinks inside are followed", func(t *testing.T) {
		for name, want := range map[string]string{"link.yaml": "a: 1\n", "linkdir/b.yaml": "b: 2\n", "up.yaml": "x: 0\n", "linkdir/deep/c.yml": "c: 3\n"} {
			got, err := fs.ReadFile(fsys, name)
			if err != nil || string(got) != want {
				t.Errorf("ReadFile(%s) = %q, %v; want %q", name, got, err, want)
			}
		}
		fi, err := fs.Stat(fsys, "linkdir")
		if err != nil || !fi.IsDir() || fi.Name() != "linkdir" {
			t.Errorf("Stat(linkdir) = %v, %v; want a directory named linkdir", fi, err)
		}
		if target, err := fs.ReadLink(fsys, "up.yaml"); err != nil || target != "../other/x.yaml" {
			t.Errorf("ReadLink(up.yaml) = %q, %v", target, err)
		}
	})

	t.Run("symlinks escaping are refused", func(t *testing.T) {
		for _, name := range []string{"evil.yaml", "abs.yaml"} {
			_, err := fs.ReadFile(fsys, name)
			if !errors.Is(err, gitsource.ErrSymlinkOutside) || !strings.Contains(err.Error(), "symlink points outside the repository") {
				t.Errorf("ReadFile(%s) err = %v, want ErrSymlinkOutside", name, err)
			}
			if _, err := fsys.Open(name); !errors.Is(err, gitsource.ErrSymlinkOutside) {
				t.Errorf("Open(%s) err = %v, want ErrSymlinkOutside", name, err)
			}
		}
		if _, err := fs.ReadFile(fsys, "sub/loop"); err == nil || !strings.Contains(err.Error(), "too many levels") {
			t.Errorf("ReadFile(sub/loop) err = %v, want a symlink loop error", err)
		}
	})

	t.Run("submodules are skipped", func(t *testing.T) {
		if _, err := fs.Stat(fsys, "submodule"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(submodule) err = %v, want ErrNotExist", err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		if _, err := fs.ReadFile(fsys, "missing.yaml"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile(missing) err = %v, want ErrNotExist", err)
		}
		if _, err := fs.ReadFile(fsys, "../README.md"); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("ReadFile(../README.md) err = %v, want ErrInvalid", err)
		}
		if _, err := fs.ReadFile(fsys, "a.yaml/x"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile(a.yaml/x) err = %v, want ErrNotExist", err)
		}
		if _, err := r.FS(strings.Repeat("1", 40)); err == nil {
			t.Error("FS of an unknown commit succeeded")
		}
	})
}

func TestOpenLocalResolve(t *testing.T) {
	u := newUpstream(t)
	u.write(map[string]string{"a.yaml": "1"})
	c1 := u.commit("one")
	git(t, u.dir, "tag", "-a", "-m", "release", "v1")
	u.write(map[string]string{"a.yaml": "2"})
	c2 := u.commit("two")
	bare := filepath.Join(t.TempDir(), "bare.git")
	git(t, "", "clone", "-q", "--bare", u.dir, bare)
	subdir := filepath.Join(u.dir, "nested", "deeper")
	if err := os.MkdirAll(subdir, 0o755); err != nil {
		t.Fatal(err)
	}

	for name, dir := range map[string]string{"work tree": u.dir, "subdirectory": subdir, "bare": bare} {
		t.Run(name, func(t *testing.T) {
			r, err := gitsource.OpenLocal(dir)
			if err != nil {
				t.Fatal(err)
			}
			for rev, want := range map[string]string{
				"main": c2, "HEAD": c2, "HEAD~1": c1, "main^": c1, "v1": c1, c1[:10]: c1, c2: c2,
			} {
				got, err := r.Resolve(rev)
				if err != nil || got != want {
					t.Errorf("Resolve(%q) = %q, %v; want %q", rev, got, err, want)
				}
			}
			if _, err := r.Resolve("nope"); err == nil {
				t.Error(`Resolve("nope") succeeded`)
			}
			if _, _, err := r.Head(testContext(t)); err == nil {
				t.Error("Head on a local repository succeeded")
			}
		})
	}
	if _, err := gitsource.OpenLocal(t.TempDir()); err == nil {
		t.Error("OpenLocal of a non-repository succeeded")
	}
}

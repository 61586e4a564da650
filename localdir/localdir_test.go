package localdir_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/localdir"
	"github.com/certops/certops/spec"
)

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := localdir.Watch(ctx, dir, 50*time.Millisecond, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	waitSignal := func(what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("no signal within 5s after %s", what)
		}
	}
	noSignal := func(what string) {
		t.Helper()
		select {
		case <-ch:
			t.Fatalf("unexpected signal after %s", what)
		case <-time.After(300 * time.Millisecond):
		}
	}

	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("a2"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitSignal("editing a file")

	// A burst coalesces into one signal.
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	waitSignal("a burst of edits")
	noSignal("the burst was signalled")

	// New subdirectories are watched.
	sub := filepath.Join(dir, "new", "deeper")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	waitSignal("creating a directory")
	time.Sleep(100 * time.Millisecond) // let the watcher add the new directories
	if err := os.WriteFile(filepath.Join(sub, "b.yaml"), []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitSignal("writing in a new subdirectory")

	// Changes under .git are ignored.
	if err := os.WriteFile(filepath.Join(dir, ".git", "index"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	noSignal("writing under .git")
}

// A Source names each snapshot by its content: an unchanged directory is the
// same revision, an edit a new one whose changed files are listed, and the
// files it cannot take (an escaping symlink, an oversize file) reach the
// loader as errors of those files.
func TestSourceSnapshots(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "a")
	write("b.yaml", "b")
	s, err := localdir.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := s.Head(ctx); err != nil || again.Commit != first.Commit {
		t.Errorf("unchanged directory: revision %s, then %s (%v)", first.Commit, again.Commit, err)
	}

	write("a.yaml", "a2")
	write("c.yaml", "c")
	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	second, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.Commit == first.Commit {
		t.Fatal("edited directory kept its revision")
	}
	changed, err := s.ChangedFiles(ctx, first.Commit, second.Commit)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.yaml", "b.yaml", "c.yaml"}; !slices.Equal(changed, want) {
		t.Errorf("ChangedFiles = %v, want %v", changed, want)
	}

	outside := filepath.Join(t.TempDir(), "secret.yaml")
	if err := os.WriteFile(outside, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "escape.yaml")); err != nil {
		t.Fatal(err)
	}
	write("big.yaml", strings.Repeat("#", spec.MaxFileSize+1))
	third, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := s.FS(ctx, third.Commit)
	if err != nil {
		t.Fatal(err)
	}
	_, err = spec.Load(fsys)
	for _, want := range []string{"escape.yaml: symlink points outside the repository", "big.yaml: file is larger than the limit"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("loading the snapshot: got %v, want an error containing %q", err, want)
		}
	}
	// Only the last two snapshots are kept.
	if _, err := s.FS(ctx, first.Commit); err == nil {
		t.Error("FS of an evicted snapshot: got nil error")
	}
}

func TestIsPlainDir(t *testing.T) {
	root := t.TempDir()
	mk := func(parts ...string) string {
		p := filepath.Join(append([]string{root}, parts...)...)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := mk("plain")
	work := mk("work")
	mk("work", ".git")
	bare := mk("bare.git")
	mk("bare.git", "objects")
	if err := os.WriteFile(filepath.Join(bare, "HEAD"), []byte("ref: refs/heads/main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "file.yaml")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		plain: true, work: false, bare: false, file: false,
		filepath.Join(root, "missing"): false, "file://" + plain: false, "https://git.example.com/config.git": false,
	} {
		if got := localdir.IsPlainDir(p); got != want {
			t.Errorf("IsPlainDir(%s) = %v, want %v", p, got, want)
		}
	}
}

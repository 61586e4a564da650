package localdir_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "a.yaml"), "a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const debounce = 50 * time.Millisecond
	watch := func(dir string) <-chan struct{} {
		t.Helper()
		ch, err := localdir.Watch(ctx, dir, debounce, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	ch := watch(dir)
	waitSignal := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("no signal within 5s after %s", what)
		}
	}
	// quiet checks that no signal is pending or on its way: after an edit
	// the next signal comes no sooner than the debounce, unless one was
	// left over from what came before.
	marker := 0
	quiet := func(what string) {
		t.Helper()
		marker++
		start := time.Now()
		write(filepath.Join(dir, "marker.yaml"), strconv.Itoa(marker))
		waitSignal(ch, "editing the marker")
		if d := time.Since(start); d < debounce {
			t.Errorf("a signal %v after editing the marker, sooner than the debounce (%v): one was left over after %s", d, debounce, what)
		}
	}

	write(filepath.Join(dir, "a.yaml"), "a2")
	waitSignal(ch, "editing a file")

	// A burst coalesces into one signal.
	for i := range 20 {
		write(filepath.Join(dir, "a.yaml"), string(rune('a'+i)))
	}
	waitSignal(ch, "a burst of edits")
	quiet("the burst was signalled")

	// New subdirectories are watched. The signal for the new directory
	// comes a debounce after its last event, by when the watcher has added
	// the directories.
	sub := filepath.Join(dir, "new", "deeper")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	waitSignal(ch, "creating a directory")
	write(filepath.Join(sub, "b.yaml"), "b")
	waitSignal(ch, "writing in a new subdirectory")

	// Changes under .git are ignored. A second watcher, edited right after,
	// signals when a signal for the .git change would have come.
	other := t.TempDir()
	otherCh := watch(other)
	write(filepath.Join(dir, ".git", "index"), "x")
	write(filepath.Join(other, "a.yaml"), "a")
	waitSignal(otherCh, "editing the second watcher's directory")
	quiet("writing under .git")
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

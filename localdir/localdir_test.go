package localdir_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certops/certops/localdir"
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

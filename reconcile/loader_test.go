package reconcile_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/fleet"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/spec"
)

// TestIncrementalLoadEqualsFullLoad walks a series of commits (edits, an
// added file, a deleted file, an invalid revision and its fix) and checks
// after each that the incremental load, re-parsing only the files of the
// git tree diff, equals a full load of the same commit.
func TestIncrementalLoadEqualsFullLoad(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := fleet.Generate(dir, fleet.Size{Certificates: 300, Agents: 40}); err != nil {
		t.Fatal(err)
	}
	first, err := fleet.InitRepo(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	src := mustRepo(t, dir)
	var inc reconcile.Loader
	fsys, err := src.FS(first)
	if err != nil {
		t.Fatal(err)
	}
	if _, errs := inc.Load(fsys, first, nil); len(errs) > 0 {
		t.Fatalf("generated fleet is invalid: %v", errs)
	}

	write := func(name, content string) {
		t.Helper()
		if err := fleet.WriteFiles(dir, map[string]string{name: content}); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name    string
		change  func()
		invalid bool
	}{
		{"edit one file", func() { mustChange(t, dir, 1) }, false},
		{"edit another", func() { mustChange(t, dir, 2) }, false},
		{"add a file", func() {
			write("extra/new.yaml", issuerYAML+agentYAML("web-01")+certYAML("extra-one", "extra.example.com"))
		}, false},
		{"break it", func() { write("extra/broken.yaml", "apiVersion: certops/v1\nkind: Nope\n") }, true},
		{"fix it", func() { write("extra/broken.yaml", "") }, false},
		{"delete a file", func() { write("extra/new.yaml", "") }, false},
	}
	prev := first
	for _, step := range steps {
		step.change()
		commit, err := fleet.Commit(ctx, dir, step.name)
		if err != nil {
			t.Fatal(err)
		}
		if rev, _, err := src.Head(ctx); err != nil || rev.Commit != commit {
			t.Fatalf("%s: fetch: got %s, %v; want %s", step.name, rev.Commit, err, commit)
		}
		changed, err := src.ChangedFiles(prev, commit)
		if err != nil {
			t.Fatal(err)
		}
		fsys, err := src.FS(commit)
		if err != nil {
			t.Fatal(err)
		}
		gotState, gotErrs := inc.Load(fsys, commit, changed)
		var full reconcile.Loader
		wantState, wantErrs := full.Load(fsys, commit, nil)
		if diff := cmp.Diff(wantErrs, gotErrs); diff != "" {
			t.Fatalf("%s: incremental errors differ from a full load (-full +incremental):\n%s", step.name, diff)
		}
		if (len(gotErrs) > 0) != step.invalid {
			t.Fatalf("%s: got errors %v, want invalid=%v", step.name, gotErrs, step.invalid)
		}
		if diff := cmp.Diff(hashes(wantState), hashes(gotState)); diff != "" {
			t.Fatalf("%s: incremental state differs from a full load (-full +incremental):\n%s", step.name, diff)
		}
		prev = commit
	}
}

func mustChange(t *testing.T, dir string, n int) {
	t.Helper()
	if _, err := fleet.ChangeOneFile(dir, n); err != nil {
		t.Fatal(err)
	}
}

func hashes(st spec.State) map[string]string {
	out := map[string]string{}
	for k, o := range st.Objects {
		out[k.String()] = o.Hash() + " " + o.Source.File
	}
	return out
}

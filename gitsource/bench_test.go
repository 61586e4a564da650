package gitsource_test

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certops/certops/gitsource"
)

// bigRepo builds, with git fast-import, a repository of 60 × 20 × 50 = 60,000
// files in nested directories and a second commit changing one of them. It
// returns the repository directory and the two commits.
func bigRepo(tb testing.TB) (dir, c1, c2 string) {
	tb.Helper()
	dir = filepath.Join(tb.TempDir(), "big")
	git(tb, "", "init", "-q", "--bare", "-b", "main", dir)
	var stream strings.Builder
	w := bufio.NewWriter(&stream)
	fmt.Fprint(w, "commit refs/heads/main\nmark :1\ncommitter A <a@example.com> 1700000000 +0000\ndata 3\none\n")
	for d := range 60 {
		for e := range 20 {
			for f := range 50 {
				content := fmt.Sprintf("kind: Certificate\nname: c-%02d-%02d-%02d\n", d, e, f)
				fmt.Fprintf(w, "M 100644 inline certs/d%02d/e%02d/f%02d.yaml\ndata %d\n%s\n", d, e, f, len(content), content)
			}
		}
	}
	fmt.Fprint(w, "commit refs/heads/main\nmark :2\ncommitter A <a@example.com> 1700000100 +0000\ndata 3\ntwo\nfrom :1\n")
	fmt.Fprint(w, "M 100644 inline certs/d31/e07/f13.yaml\ndata 8\nchanged\n\n")
	w.Flush()

	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = dir
	cmd.Env = gitEnv()
	cmd.Stdin = strings.NewReader(stream.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("git fast-import: %v\n%s", err, out)
	}
	return dir, git(tb, dir, "rev-parse", "main~1"), git(tb, dir, "rev-parse", "main")
}

func BenchmarkChangedFiles(b *testing.B) {
	dir, c1, c2 := bigRepo(b)
	r, err := gitsource.OpenLocal(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		got, err := r.ChangedFiles(c1, c2)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != 1 || got[0] != "certs/d31/e07/f13.yaml" {
			b.Fatalf("ChangedFiles = %v", got)
		}
	}
}

// BenchmarkHeadUnchanged measures the poll of an unchanged ref of the big
// repository over file://: one ref advertisement, no fetch.
func BenchmarkHeadUnchanged(b *testing.B) {
	dir, _, c2 := bigRepo(b)
	r, err := gitsource.Open(testContext(b), gitsource.Config{URL: "file://" + dir, CacheDir: filepath.Join(b.TempDir(), "cache")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx := testContext(b)
	b.ResetTimer()
	for b.Loop() {
		rev, _, err := r.Head(ctx)
		if err != nil || rev.Commit != c2 {
			b.Fatalf("Head = %v, %v", rev, err)
		}
	}
	if r.Fetches() != 1 {
		b.Fatalf("fetches = %d, want 1 (the clone)", r.Fetches())
	}
}

// BenchmarkOpen measures a fresh clone of the big repository into a cache
// directory, for comparison with `git clone --bare --single-branch`.
func BenchmarkOpen(b *testing.B) {
	dir, _, _ := bigRepo(b)
	for b.Loop() {
		r, err := gitsource.Open(testContext(b), gitsource.Config{URL: "file://" + dir, CacheDir: filepath.Join(b.TempDir(), "cache")}, nil)
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

// TestChangedFilesBigRepo checks the one-change diff over the 60,000-file
// repository stays proportional to the change (skipped with -short).
func TestChangedFilesBigRepo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 60,000-file repository")
	}
	dir, c1, c2 := bigRepo(t)
	r, err := gitsource.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.ChangedFiles(c1, c2)
	if err != nil || len(got) != 1 || got[0] != "certs/d31/e07/f13.yaml" {
		t.Fatalf("ChangedFiles = %v, %v", got, err)
	}
}

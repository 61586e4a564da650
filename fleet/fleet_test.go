package fleet_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/certops/certops/fleet"
	"github.com/certops/certops/spec"
)

func TestGenerateLoadsClean(t *testing.T) {
	dir := generateSmall(t)
	state, err := spec.LoadDir(dir)
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	got := map[spec.Kind]int{}
	for key := range state.Objects {
		got[key.Kind]++
	}
	want := map[spec.Kind]int{spec.KindIssuer: 2, spec.KindAgent: 10, spec.KindCertificate: 50}
	for _, kind := range spec.Kinds {
		if got[kind] != want[kind] {
			t.Errorf("%s: got %d objects, want %d", kind, got[kind], want[kind])
		}
	}
}

func TestGenerateLayout(t *testing.T) {
	dir := t.TempDir()
	// 240 certificate files: two full team directories and a third with 40.
	if err := fleet.Generate(dir, fleet.Size{Certificates: 12000, Agents: 250}); err != nil {
		t.Fatal(err)
	}
	for pattern, want := range map[string]int{
		"issuers.yaml":                          1,
		"agents/agents-*.yaml":                  3,
		"certificates/team-001/*.yaml":          100,
		"certificates/team-002/*.yaml":          100,
		"certificates/team-003/*.yaml":          40,
		"certificates/team-004/*.yaml":          0,
		"certificates/team-003/certs-0040.yaml": 1,
	} {
		matches, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			t.Fatal(err)
		}
		if len(matches) != want {
			t.Errorf("%s: got %d files, want %d", pattern, len(matches), want)
		}
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	size := fleet.Size{Certificates: 120, Agents: 30}
	if err := fleet.Generate(a, size); err != nil {
		t.Fatal(err)
	}
	if err := fleet.Generate(b, size); err != nil {
		t.Fatal(err)
	}
	got, want := readTree(t, b), readTree(t, a)
	if len(got) != len(want) {
		t.Fatalf("second run wrote %d files, first %d", len(got), len(want))
	}
	for name, data := range want {
		if !bytes.Equal(got[name], data) {
			t.Errorf("%s differs between runs", name)
		}
	}
}

func TestChangeOneFileChangesOneObject(t *testing.T) {
	dir := generateSmall(t)
	before := loadHashes(t, dir)
	for n := range 5 {
		file, err := fleet.ChangeOneFile(dir, n)
		if err != nil {
			t.Fatalf("ChangeOneFile(%d): %v", n, err)
		}
		after := loadHashes(t, dir)
		var changed []spec.Key
		for key, hash := range after {
			if before[key] != hash {
				changed = append(changed, key)
			}
		}
		if len(after) != len(before) {
			t.Errorf("ChangeOneFile(%d) changed the object count: %d -> %d", n, len(before), len(after))
		}
		if len(changed) != 1 || changed[0].Kind != spec.KindCertificate {
			t.Errorf("ChangeOneFile(%d) in %s changed %v, want exactly one certificate", n, file, changed)
		}
		before = after
	}
	if _, err := fleet.ChangeOneFile(dir, 4); err == nil {
		t.Errorf("ChangeOneFile(4) twice: got no error for a change that changes nothing")
	}
}

func TestChangeOneFileIsDeterministic(t *testing.T) {
	a, b := generateSmall(t), generateSmall(t)
	for _, n := range []int{0, 3, 17} {
		fileA, err := fleet.ChangeOneFile(a, n)
		if err != nil {
			t.Fatal(err)
		}
		fileB, err := fleet.ChangeOneFile(b, n)
		if err != nil {
			t.Fatal(err)
		}
		if fileA != fileB {
			t.Errorf("ChangeOneFile(%d): changed %s, then %s", n, fileA, fileB)
		}
	}
	got, want := readTree(t, b), readTree(t, a)
	for name, data := range want {
		if !bytes.Equal(got[name], data) {
			t.Errorf("%s differs after the same changes", name)
		}
	}
}

func TestInitRepoAndCommit(t *testing.T) {
	ctx := t.Context()
	dir := generateSmall(t)
	first, err := fleet.InitRepo(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	commitID := regexp.MustCompile(`^[0-9a-f]{40}$`)
	if !commitID.MatchString(first) {
		t.Fatalf("InitRepo: commit %q is not 40 hex digits", first)
	}
	file, err := fleet.ChangeOneFile(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	second, err := fleet.Commit(ctx, dir, "change "+file)
	if err != nil {
		t.Fatal(err)
	}
	if !commitID.MatchString(second) || second == first {
		t.Fatalf("Commit: got %q after %q, want a new commit id", second, first)
	}
	if _, err := fleet.Commit(ctx, dir, "nothing"); err == nil {
		t.Errorf("Commit with no changes: got no error")
	}
	if _, err := os.Stat(filepath.Join(dir, ".git", "HEAD")); err != nil {
		t.Errorf("no .git/HEAD: %v", err)
	}
	checkGitClean(ctx, t, dir)
}

func TestSizes(t *testing.T) {
	sizes := fleet.Sizes()
	if len(sizes) != 3 || sizes[2] != (fleet.Size{Certificates: 50000, Agents: 10000}) {
		t.Errorf("Sizes() = %v, want the 500/100, 5K/1K, 50K/10K ladder", sizes)
	}
}

func BenchmarkGenerate(b *testing.B) {
	size := fleet.Sizes()[2]
	dir := filepath.Join(b.TempDir(), size.String())
	for b.Loop() {
		if err := fleet.Generate(dir, size); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(size.Certificates), "certs/op")
}

// generateSmall generates a fleet of 50 certificates and 10 agents in a new
// directory and returns it.
func generateSmall(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := fleet.Generate(dir, fleet.Size{Certificates: 50, Agents: 10}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkGitClean fails the test if dir's work tree has uncommitted changes.
func checkGitClean(ctx context.Context, t *testing.T, dir string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "git", "status", "--porcelain")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git status: %v", err)
	}
	if len(out) > 0 {
		t.Errorf("work tree not clean after Commit:\n%s", out)
	}
}

func loadHashes(t *testing.T, dir string) map[spec.Key]string {
	t.Helper()
	state, err := spec.LoadDir(dir)
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	out := make(map[spec.Key]string, len(state.Objects))
	for key, obj := range state.Objects {
		out[key] = obj.Hash()
	}
	return out
}

func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := fs.WalkDir(os.DirFS(dir), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		out[name] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

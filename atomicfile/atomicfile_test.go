package atomicfile_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/certops/certops/atomicfile"
)

// names lists dir, so a test sees any temporary file left behind.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func wantNames(t *testing.T, dir string, want ...string) {
	t.Helper()
	if got := names(t, dir); !slices.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

func wantFile(t *testing.T, path, content string, perm fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != content {
		t.Errorf("%s holds %q, want %q", path, b, content)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != perm {
		t.Errorf("%s: mode %v, want a regular file with %v", path, fi.Mode(), perm)
	}
}

func writeFile(t *testing.T, path, content string, perm fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}

// withUmask runs the test under a umask that would narrow every mode the
// tests ask for.
func withUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	t.Cleanup(func() { syscall.Umask(old) })
}

func TestWriteFileCreatesAndReplaces(t *testing.T) {
	withUmask(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := atomicfile.WriteFile(path, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, "one", 0o644)
	if err := atomicfile.WriteFile(path, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, "two", 0o600)
	wantNames(t, dir, "state.json")
}

func TestWriteFileReplacesASymlinkNotItsTarget(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	writeFile(t, target, "old", 0o644)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteFile(link, []byte("new"), 0o640); err != nil {
		t.Fatal(err)
	}
	wantFile(t, link, "new", 0o640)
	wantFile(t, target, "old", 0o644)
}

func TestWriteFileRelativePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := atomicfile.WriteFile("state.json", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(dir, "state.json"), "x", 0o600)
	wantNames(t, dir, "state.json")
}

func TestWriteFileUnwritableDirectory(t *testing.T) {
	t.Run("parent is a file", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "file"), "", 0o644)
		err := atomicfile.WriteFile(filepath.Join(dir, "file", "state.json"), []byte("x"), 0o600)
		if err == nil {
			t.Fatal("WriteFile succeeded")
		}
		wantNames(t, dir, "file")
	})
	t.Run("missing directory", func(t *testing.T) {
		dir := t.TempDir()
		err := atomicfile.WriteFile(filepath.Join(dir, "missing", "state.json"), []byte("x"), 0o600)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("WriteFile = %v, want fs.ErrNotExist", err)
		}
		wantNames(t, dir)
	})
	t.Run("read-only directory", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root may write to a read-only directory")
		}
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		err := atomicfile.WriteFile(filepath.Join(dir, "state.json"), []byte("x"), 0o600)
		if !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("WriteFile = %v, want fs.ErrPermission", err)
		}
		wantNames(t, dir)
	})
}

func TestWriteFileFailedRenameLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	// A non-empty directory where the file should go: the rename fails
	// after the temporary file is complete.
	blocked := filepath.Join(dir, "state.json")
	if err := os.Mkdir(blocked, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(blocked, "inside"), "keep", 0o644)
	if err := atomicfile.WriteFile(blocked, []byte("x"), 0o600); err == nil {
		t.Fatal("WriteFile succeeded")
	}
	wantNames(t, dir, "state.json")
	wantFile(t, filepath.Join(blocked, "inside"), "keep", 0o644)
}

// failingReader yields some data, then fails.
type failingReader struct{ done bool }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, errors.New("source broke")
	}
	r.done = true
	return copy(p, "partial content"), nil
}

func TestWriteFrom(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.dump")
	if err := atomicfile.WriteFrom(path, strings.NewReader("dump"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, "dump", 0o600)

	err := atomicfile.WriteFrom(path, &failingReader{}, 0o644)
	if err == nil || !strings.Contains(err.Error(), "source broke") {
		t.Fatalf("WriteFrom = %v, want the reader's error", err)
	}
	wantFile(t, path, "dump", 0o600)
	wantNames(t, dir, "backup.dump")
}

func TestCreate(t *testing.T) {
	withUmask(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.crt")
	if err := atomicfile.Create(path, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, "new", 0o644)
	wantNames(t, dir, "ca.crt")
}

func TestCreateRefusesAnExistingPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, "theirs", 0o644)
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, dangling} {
		err := atomicfile.Create(p, []byte("mine"), 0o600)
		if !errors.Is(err, fs.ErrExist) {
			t.Errorf("Create(%s) = %v, want fs.ErrExist", p, err)
		}
	}
	wantFile(t, file, "theirs", 0o644)
	if got, err := os.Readlink(dangling); err != nil || got != filepath.Join(dir, "nowhere") {
		t.Errorf("symlink now %q, %v", got, err)
	}
	wantNames(t, dir, "dangling", "file")
}

func TestCreateRaceHasOneWinner(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "account.key")
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = atomicfile.Create(path, []byte(fmt.Sprint(i)), 0o600) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("writers %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("writer %d: %v, want fs.ErrExist", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	wantFile(t, path, fmt.Sprint(winner), 0o600)
	wantNames(t, dir, "account.key")
}

func TestCreateUnwritableDirectory(t *testing.T) {
	dir := t.TempDir()
	err := atomicfile.Create(filepath.Join(dir, "missing", "ca.key"), []byte("x"), 0o600)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Create = %v, want fs.ErrNotExist", err)
	}
	wantNames(t, dir)
}

func TestWriteTemp(t *testing.T) {
	withUmask(t)
	dir := t.TempDir()
	path := filepath.Join(dir, ".cert.pem.tmp")
	if err := atomicfile.WriteTemp(path, []byte("cert"), 0o644, -1, -1); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, "cert", 0o644)
}

func TestWriteTempRefusesAnExistingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "prepared")
	writeFile(t, path, "theirs", 0o666)
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteTemp(path, []byte("mine"), 0o600, -1, -1); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteTemp = %v, want fs.ErrExist", err)
	}
	wantFile(t, path, "theirs", 0o666) // neither written nor removed
}

func TestWriteTempOwner(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.pem")
	if os.Geteuid() != 0 {
		// Giving a file away takes root: the failure names the ids and
		// leaves nothing behind.
		err := atomicfile.WriteTemp(path, []byte("key"), 0o600, 0, 0)
		if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "uid 0 gid 0") {
			t.Fatalf("WriteTemp = %v, want a permission error naming uid 0 gid 0", err)
		}
		wantNames(t, dir)
		return
	}
	if err := atomicfile.WriteTemp(path, []byte("key"), 0o640, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 65534 || st.Gid != 65534 {
		t.Errorf("owner %d:%d, want 65534:65534", st.Uid, st.Gid)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode())
	}
}

func TestWriteTempUnwritableDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "file"), "", 0o644)
	if err := atomicfile.WriteTemp(filepath.Join(dir, "file", "x"), []byte("x"), 0o600, -1, -1); err == nil {
		t.Fatal("WriteTemp succeeded")
	}
	wantNames(t, dir, "file")
}

func TestSyncDir(t *testing.T) {
	if err := atomicfile.SyncDir(t.TempDir()); err != nil {
		t.Errorf("SyncDir = %v", err)
	}
	t.Chdir(t.TempDir())
	if err := atomicfile.SyncDir(""); err != nil {
		t.Errorf(`SyncDir("") = %v`, err)
	}
	if err := atomicfile.SyncDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SyncDir(missing) = %v, want fs.ErrNotExist", err)
	}
}

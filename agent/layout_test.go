package agent

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
)

// versionDirs lists the version directories of the symlink layout of shop.
func (e *env) versionDirs() []string {
	ents, _ := os.ReadDir(filepath.Join(e.dir, versionsPrefix+"shop"))
	var out []string
	for _, d := range ents {
		if d.IsDir() && strings.HasPrefix(d.Name(), versionPrefix) {
			out = append(out, d.Name())
		}
	}
	return out
}

// With the symlink layout, readers that resolve the current link once never
// see a certificate and key that do not match, while the agent swaps the
// set many times; every path is a link, and old versions are pruned.
func TestSymlinkLayoutReadersNeverSeeATornPair(t *testing.T) {
	e := newEnv(t)
	e.srv.edit("shop", func(as *agentproto.Assignment) { as.Files.Layout = layoutSymlink })
	a := e.newAgent()
	e.sync(a)

	current := filepath.Join(e.dir, versionsPrefix+"shop", currentLink)
	var (
		stop             atomic.Bool
		reads, mismatch  atomic.Int64
		wg               sync.WaitGroup
		firstMismatchErr atomic.Value
	)
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				dir, err := filepath.EvalSymlinks(current)
				if errors.Is(err, fs.ErrNotExist) {
					continue // the version it named was pruned after a flip: resolve again
				}
				if err != nil {
					firstMismatchErr.CompareAndSwap(nil, err.Error())
					mismatch.Add(1)
					continue
				}
				cert, err1 := os.ReadFile(filepath.Join(dir, "cert.pem"))
				key, err2 := os.ReadFile(filepath.Join(dir, "key.pem"))
				if errors.Is(err1, fs.ErrNotExist) || errors.Is(err2, fs.ErrNotExist) {
					continue // that version was pruned after the flip: read again
				}
				reads.Add(1)
				if err1 != nil || err2 != nil || !keyFits(string(key), string(cert)) {
					firstMismatchErr.CompareAndSwap(nil, "a key that does not fit its certificate")
					mismatch.Add(1)
				}
			}
		})
	}
	const swaps = 15
	serials := map[string]bool{}
	for range swaps {
		var renewAt time.Time
		e.srv.edit("shop", func(as *agentproto.Assignment) { renewAt = as.RenewAt })
		e.clock.Set(renewAt)
		e.sync(a)
		set := e.fileSet()
		if !keyFits(set["key.pem"], set["cert.pem"]) {
			t.Fatal("the paths name a key that does not fit the certificate")
		}
		serials[set["cert.pem"]] = true
	}
	stop.Store(true)
	wg.Wait()
	if n := mismatch.Load(); n > 0 {
		t.Fatalf("%d torn reads of %d, first: %v", n, reads.Load(), firstMismatchErr.Load())
	}
	if len(serials) != swaps || reads.Load() == 0 {
		t.Fatalf("%d distinct certificates over %d swaps, %d reads", len(serials), swaps, reads.Load())
	}
	for _, p := range []string{e.files.Cert, e.files.Chain, e.files.Fullchain, e.files.Key} {
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("%s is not a symlink: %v %v", p, fi, err)
		}
	}
	if v := e.versionDirs(); len(v) != 1 {
		t.Errorf("version directories %v, want the current one only", v)
	}
	if fi, err := os.Stat(e.files.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key through the link: %v %v, want mode 0600", fi, err)
	}
}

// With the symlink layout, files in different directories are refused
// before anything is written.
func TestSymlinkLayoutNeedsOneDirectory(t *testing.T) {
	e := newEnv(t)
	e.srv.edit("shop", func(as *agentproto.Assignment) {
		as.Files.Layout = layoutSymlink
		as.Files.Key = filepath.Join(filepath.Dir(e.dir), "elsewhere", "key.pem")
	})
	a := e.newAgent()
	if err := a.SyncOnce(t.Context()); err == nil || !strings.Contains(err.Error(), "one directory") {
		t.Fatalf("SyncOnce = %v, want a refusal", err)
	}
	if ents := e.dirEntries(); len(ents) != 0 {
		t.Errorf("written: %v", ents)
	}
}

package spec

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseFile checks that no input makes ParseFile or Validate (over the
// objects of the file, as a revision of its own) panic, that every error
// names the file and a non-negative line, and that hashes are deterministic.
func FuzzParseFile(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
		names, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, n := range names {
			data, err := os.ReadFile(n)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a [x]\nb: *a\nc: *b\n"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, errs := ParseFile("fuzz.yaml", data)
		for _, e := range append(Validate(objs), errs...) {
			if e.File != "fuzz.yaml" || e.Line < 0 {
				t.Fatalf("bad error position: %#v", e)
			}
		}
		if len(errs) > 0 {
			return
		}
		again, _ := ParseFile("fuzz.yaml", data)
		if len(again) != len(objs) {
			t.Fatalf("second parse gave %d objects, first %d", len(again), len(objs))
		}
		for i, o := range objs {
			if h := o.Hash(); h != again[i].Hash() || h != o.Hash() {
				t.Fatalf("hash of %s is not deterministic", o.Key())
			}
		}
	})
}

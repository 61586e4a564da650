package spec

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// referenceCanonical is the definition canonicalize must match: decode into
// any with numbers as written, and marshal again (maps sort their keys).
func referenceCanonical(b []byte) ([]byte, error) {
	var generic any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return nil, err
	}
	return json.Marshal(generic)
}

func checkCanonical(t *testing.T, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	want, err := referenceCanonical(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := canonicalize(b)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("canonicalize(%s) =\n%s (%v)\nwant\n%s", b, got, err, want)
	}
}

// Every object of the valid test configs, and values with the keys and
// strings JSON escapes, canonicalize exactly as decoding and re-encoding
// them does (the hashes stored in databases depend on it).
func TestCanonicalizeMatchesReencoding(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/valid/*")
	dirs = append(dirs, "../examples/config")
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		st, err := LoadDir(dir)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, o := range st.Objects {
			checkCanonical(t, o.Content())
		}
	}
	weird := []string{"", "a", "b", "<tag>", "a&b", "\u2028", "\u2029", `q"uote`, `back\slash`, "tab\t", "\x01",
		"é", "日本", "😀", "A", "a b", "ab", "aa"}
	rng := rand.New(rand.NewPCG(3, 4))
	var random func(depth int) any
	random = func(depth int) any {
		switch n := rng.IntN(8); {
		case depth > 3 || n < 2:
			return weird[rng.IntN(len(weird))]
		case n == 2:
			return []any{rng.Float64() * 1e22, -rng.IntN(1000), 1e-9, true, nil}
		case n < 5:
			var a []any
			for range rng.IntN(4) {
				a = append(a, random(depth+1))
			}
			return a
		default:
			m := map[string]any{}
			for range rng.IntN(6) {
				m[weird[rng.IntN(len(weird))]] = random(depth + 1)
			}
			return m
		}
	}
	for range 2000 {
		checkCanonical(t, random(0))
	}
	checkCanonical(t, map[string]any{})
	checkCanonical(t, []any{})
	checkCanonical(t, struct {
		Z string            `json:"z"`
		A map[string]string `json:"a,omitempty"`
		M struct{ Y, X int }
	}{Z: "z", A: map[string]string{"k<": "v>"}})
}

// Malformed input is an error, never a panic.
func TestCanonicalizeRefusesMalformed(t *testing.T) {
	for _, bad := range []string{"", "{", `{"a"`, `{"a":}`, `{"a":1,}`, `[1,`, `"abc`, `{"a":1}x`, `{1:2}`, `[1 2]`} {
		if got, err := canonicalize([]byte(bad)); err == nil {
			t.Errorf("canonicalize(%q) = %s, want an error", bad, got)
		}
	}
}

func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[{"d":null,"c":"x"}]}`, `"\u003c"`, `[]`, `{"\u00e9":1,"e":2}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var v any
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		if dec.Decode(&v) != nil {
			canonicalize([]byte(s)) // must not panic
			return
		}
		checkCanonical(t, v)
	})
}

// BenchmarkCanonicalJSON compares CanonicalJSON with the decode and
// re-encode it replaces, on the example config's objects.
func BenchmarkCanonicalJSON(b *testing.B) {
	st, err := LoadDir("../examples/config")
	if err != nil {
		b.Fatal(err)
	}
	var contents [][]byte
	for _, o := range st.Objects {
		raw, err := json.Marshal(o.Content())
		if err != nil {
			b.Fatal(err)
		}
		contents = append(contents, raw)
	}
	for _, bc := range []struct {
		name string
		fn   func([]byte) ([]byte, error)
	}{{"canonicalize", canonicalize}, {"reencode", referenceCanonical}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, c := range contents {
					if _, err := bc.fn(c); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

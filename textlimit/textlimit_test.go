package textlimit

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		s         string
		max       int
		multiline bool
		ok        bool
	}{
		{"web-01.example.com", 256, false, true},
		{"héllo wörld ✓", 256, false, true},
		{"\uFFFD is fine when encoded", 256, false, true},
		{"host\x00name", 256, false, false},
		{"host\x00name", 256, true, false},
		{"bad \xff byte", 256, true, false},
		{"truncated \xe2\x9c", 256, true, false},
		{"bell\a", 256, true, false},
		{"esc\x1b[31m", 256, true, false},
		{"del\x7f", 256, true, false},
		{"c1\u0085", 256, true, false},
		{"two\nlines\tand\r", 256, true, true},
		{"two\nlines", 256, false, false},
		{strings.Repeat("a", 257), 256, false, false},
		{strings.Repeat("a", 256), 256, false, true},
	} {
		err := Check(tc.s, tc.max, tc.multiline)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q, %d, %v) = %v, want ok=%v", tc.s, tc.max, tc.multiline, err, tc.ok)
		}
	}
}

func TestCleanAlwaysPassesCheck(t *testing.T) {
	for _, s := range []string{"ok", "nul\x00here", "\xff\xfe", "a\x1bb\nc", "\xe2\x9c", "é\u0085"} {
		for _, ml := range []bool{false, true} {
			got := Clean(s, ml)
			if err := Check(got, len(got), ml); err != nil {
				t.Errorf("Clean(%q, %v) = %q: %v", s, ml, got, err)
			}
			if strings.Contains(got, "\x00") {
				t.Errorf("Clean(%q) kept a NUL", s)
			}
		}
	}
	if got := Clean("a\nb", true); got != "a\nb" {
		t.Errorf("Clean kept newline = %q", got)
	}
}

func TestTruncate(t *testing.T) {
	if got := Truncate("short", 10); got != "short" {
		t.Errorf("got %q", got)
	}
	long := strings.Repeat("é", 100_000) // 2 bytes each
	for _, max := range []int{0, 1, 5, 17, 18, 19, 100, 4096} {
		got := Truncate(long, max)
		if len(got) > max {
			t.Errorf("Truncate(_, %d) is %d bytes", max, len(got))
		}
		if !utf8.ValidString(got) {
			t.Errorf("Truncate(_, %d) = %q is not valid UTF-8", max, got)
		}
	}
	got := Truncate(long, 4096)
	kept := got[:strings.Index(got, "…")]
	if want := "… (" + strconv.Itoa(len(long)-len(kept)) + " bytes more)"; !strings.HasSuffix(got, want) {
		t.Errorf("Truncate marker: got suffix %q, want %q", got[len(got)-30:], want)
	}
}

func TestBound(t *testing.T) {
	s := "x\x00y" + strings.Repeat("\xff", 10_000)
	got := Bound(s, 100)
	if len(got) > 100 || Check(got, 100, true) != nil {
		t.Errorf("Bound = %q", got)
	}
}

package bearer

import "testing"

func TestParse(t *testing.T) {
	for _, c := range []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"Bearer   abc", "abc", true},
		{"Bearer ", "", false},
		{"Bearer", "", false},
		{"Basic abc", "", false},
		{"Bearer a b", "", false},
		{"", "", false},
	} {
		token, ok := Parse(c.header)
		if token != c.token || ok != c.ok {
			t.Errorf("Parse(%q) = %q, %v; want %q, %v", c.header, token, ok, c.token, c.ok)
		}
	}
}

func TestEqual(t *testing.T) {
	if !Equal("s3cret", "s3cret") || Equal("s3cret", "s3cre") || Equal("", "s3cret") || Equal("s3cret", "s3cret\x00") {
		t.Fatal("Equal")
	}
}

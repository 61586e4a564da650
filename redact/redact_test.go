package redact

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"https://user:SECRET@git.example.com/x.git", "https://REDACTED@git.example.com/x.git"},
		{"https://ghp_SECRET@github.com/o/r.git", "https://REDACTED@github.com/o/r.git"},
		{"https://git.example.com/x.git?token=SECRET&ref=main", "https://git.example.com/x.git?token=REDACTED&ref=main"},
		{"https://h/x?access_token=SECRET&private_token=SECRET2&Password=SECRET3", "https://h/x?access_token=REDACTED&private_token=REDACTED&Password=REDACTED"},
		{"ssh://git@git.example.com/x.git", "ssh://git@git.example.com/x.git"},
		{"ssh://git:SECRET@git.example.com/x.git", "ssh://git:REDACTED@git.example.com/x.git"},
		{"postgres://u:SECRET@db:5432/certops?sslmode=disable", "postgres://REDACTED@db:5432/certops?sslmode=disable"},
		{"/srv/config", "/srv/config"},
		{"git@github.com:o/r.git", "git@github.com:o/r.git"},
		{"https://h/x.git", "https://h/x.git"},
	} {
		if got := URL(c.in); got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestText(t *testing.T) {
	in := `gitsource: Get "https://u:SECRETPASS@127.0.0.1:1/x.git/info/refs?service=git-upload-pack&token=SECRETTOK": dial tcp 127.0.0.1:1: connection refused`
	got := Text(in)
	if strings.Contains(got, "SECRET") {
		t.Fatalf("Text left a secret: %s", got)
	}
	if !strings.Contains(got, "127.0.0.1:1/x.git/info/refs?service=git-upload-pack&token=REDACTED") || !strings.Contains(got, "connection refused") {
		t.Fatalf("Text changed more than the secrets: %s", got)
	}
}

func TestError(t *testing.T) {
	if Error(nil) != nil {
		t.Fatal("Error(nil) is not nil")
	}
	err := Error(errors.Join(errors.New("fetch https://a:SECRET@h/x"), fs.ErrNotExist))
	if strings.Contains(err.Error(), "SECRET") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Error: %v (Is ErrNotExist %v)", err, errors.Is(err, fs.ErrNotExist))
	}
}

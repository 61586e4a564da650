package secret_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certops/certops/secret"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if got, err := secret.ReadFile(write("ok", "  s3cret\n")); err != nil || got != "s3cret" {
		t.Errorf("ReadFile(ok) = %q, %v; want s3cret", got, err)
	}
	for _, tt := range []struct{ name, path, want string }{
		{"empty", write("empty", " \n"), "is empty"},
		{"missing", filepath.Join(dir, "nope"), "does not exist"},
		{"unconfigured", "", "no secret file configured"},
		{"a directory", dir, "read secret file"},
	} {
		got, err := secret.ReadFile(tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ReadFile = %q, %v; want an error containing %q", tt.name, got, err, tt.want)
		}
	}
}

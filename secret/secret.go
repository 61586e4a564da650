// Package secret reads the secrets that desired state and flags point at:
// tokens, passwords, webhook keys and URLs kept in files (mounted Secrets),
// never in Git or on a command line.
package secret

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// ReadFile reads the secret in the file at path, trimming surrounding white
// space (a trailing newline is the usual accident). A missing or empty file
// is an error. Errors name the file, never its content.
func ReadFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("no secret file configured")
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("secret file %s does not exist", path)
	case err != nil:
		return "", fmt.Errorf("read secret file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	return s, nil
}

// Package signtest makes throwaway signing keys — an OpenPGP key in a
// private GNUPGHOME, or an SSH key — and commits signed with them by the git
// CLI, for tests of commit verification. It needs git, and gpg or
// ssh-keygen; a test without them is skipped.
package signtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Signer is one signing key and the trusted-keys file that trusts it: an
// armored OpenPGP public key, or an allowed_signers line.
type Signer struct {
	Email   string
	Trusted string // the trusted-keys file for this key alone
	format  string // "openpgp" or "ssh"
	key     string // gpg key fingerprint, or the SSH private key file
	home    string // GNUPGHOME
}

// GPG generates an ed25519 OpenPGP key for email in a throwaway GNUPGHOME and
// exports its public key to Trusted.
func GPG(t testing.TB, email string) *Signer {
	t.Helper()
	need(t, "gpg")
	// A short path: gpg-agent's socket lives in GNUPGHOME.
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	s := &Signer{Email: email, format: "openpgp", home: home}
	t.Cleanup(func() {
		kill := exec.Command("gpgconf", "--kill", "gpg-agent")
		kill.Env = s.env()
		_ = kill.Run()
		os.RemoveAll(home)
	})
	s.gpg(t, "--quick-generate-key", "Test <"+email+">", "ed25519", "sign", "never")
	for _, line := range strings.Split(s.gpg(t, "--with-colons", "--list-keys", email), "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" && s.key == "" {
			s.key = f[9]
		}
	}
	if s.key == "" {
		t.Fatal("signtest: no fingerprint for the generated key")
	}
	s.Trusted = filepath.Join(t.TempDir(), "trusted.asc")
	write(t, s.Trusted, s.gpg(t, "--armor", "--export", s.key)+"\n")
	return s
}

// SSH generates an ed25519 SSH key and writes an allowed_signers file
// trusting it for email in namespace git to Trusted.
func SSH(t testing.TB, email string) *Signer {
	t.Helper()
	need(t, "ssh-keygen")
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	run(t, "", nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", email, "-f", key)
	s := &Signer{Email: email, format: "ssh", key: key, Trusted: filepath.Join(dir, "allowed_signers")}
	write(t, s.Trusted, "# test signers\n"+s.AllowedSigner(`namespaces="git"`)+"\n")
	return s
}

// AllowedSigner is the allowed_signers line of an SSH signer, with options
// (which may be empty).
func (s *Signer) AllowedSigner(options string) string {
	pub, err := os.ReadFile(s.key + ".pub")
	if err != nil {
		panic(err)
	}
	f := strings.Fields(string(pub))
	return strings.TrimSpace(strings.Join([]string{s.Email, options, f[0], f[1]}, " "))
}

// Public is the trusted-keys file's content.
func (s *Signer) Public(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(s.Trusted)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Commit stages everything in the work tree dir and commits it with msg,
// signed by s (unsigned when s is nil), and returns the commit hash.
func Commit(t testing.TB, dir string, s *Signer, msg string) string {
	t.Helper()
	Git(t, dir, nil, "add", "-A")
	args := []string{"commit", "-q", "--allow-empty", "-m", msg}
	if s != nil {
		args = append(s.Config(), append(args, "-S")...)
	}
	Git(t, dir, s, args...)
	return Git(t, dir, nil, "rev-parse", "HEAD")
}

// Git runs git in dir with a hermetic configuration (no user or system
// config, a fixed identity), with s's key available (s may be nil), and
// returns its trimmed stdout.
func Git(t testing.TB, dir string, s *Signer, args ...string) string {
	t.Helper()
	return run(t, dir, s.env(), "git", args...)
}

// Config is the git configuration (-c options) that signs with s.
func (s *Signer) Config() []string {
	if s.format == "ssh" {
		return []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + s.key}
	}
	return []string{"-c", "gpg.format=openpgp", "-c", "user.signingkey=" + s.key}
}

func (s *Signer) env() []string {
	env := append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Alice", "GIT_AUTHOR_EMAIL=alice@example.com",
		"GIT_COMMITTER_NAME=Alice", "GIT_COMMITTER_EMAIL=alice@example.com",
		"GIT_TERMINAL_PROMPT=0")
	if s != nil && s.home != "" {
		env = append(env, "GNUPGHOME="+s.home)
	}
	return env
}

func (s *Signer) gpg(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, "", s.env(), "gpg", append([]string{"--batch", "--passphrase", "", "--pinentry-mode", "loopback"}, args...)...)
}

func run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// need skips a test without tool, except in CI (CI=true), which must have
// it: a skipped signature test there would hide a missing install step.
func need(t testing.TB, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("signtest: %s not installed", tool)
		}
		t.Skipf("signtest: %s not installed", tool)
	}
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

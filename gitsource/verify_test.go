package gitsource_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certops/certops/gitsource"
	"github.com/certops/certops/gitsource/signtest"
)

// signedRepo is a work tree whose commits tests sign with real keys.
type signedRepo struct {
	t   *testing.T
	dir string
}

func newSignedRepo(t *testing.T) *signedRepo {
	dir := filepath.Join(t.TempDir(), "repo")
	signtest.Git(t, "", nil, "init", "-q", "-b", "main", dir)
	return &signedRepo{t: t, dir: dir}
}

// commit writes a file and commits it, signed by s (nil: unsigned).
func (r *signedRepo) commit(s *signtest.Signer, msg string) string {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, strings.ReplaceAll(msg, " ", "-")+".yaml"), []byte("# "+msg+"\n"), 0o644); err != nil {
		r.t.Fatal(err)
	}
	return signtest.Commit(r.t, r.dir, s, msg)
}

func (r *signedRepo) git(args ...string) string {
	r.t.Helper()
	return signtest.Git(r.t, r.dir, nil, args...)
}

// verify opens the repository as `certops plan` does and verifies base..head.
func (r *signedRepo) verify(keys *gitsource.TrustedKeys, base, head string) []gitsource.UntrustedCommit {
	r.t.Helper()
	repo, err := gitsource.OpenLocal(r.dir)
	if err != nil {
		r.t.Fatal(err)
	}
	bad, err := repo.VerifyCommits(keys, base, head)
	if err != nil {
		r.t.Fatalf("VerifyCommits(%s, %s): %v", base, head, err)
	}
	return bad
}

func trust(t *testing.T, signers ...*signtest.Signer) *gitsource.TrustedKeys {
	t.Helper()
	var files []string
	for _, s := range signers {
		files = append(files, s.Trusted)
	}
	keys, err := gitsource.LoadTrustedKeys(files)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// wantUntrusted checks that exactly the commits in want are reported, each
// with its problem.
func wantUntrusted(t *testing.T, got []gitsource.UntrustedCommit, want map[string]gitsource.Problem) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d untrusted commits %v, want %d", len(got), got, len(want))
	}
	for _, u := range got {
		p, ok := want[u.Commit]
		switch {
		case !ok:
			t.Errorf("commit %s reported (%s), want it accepted", u.Commit, u.Error())
		case u.Problem != p:
			t.Errorf("commit %s: problem %q (%s), want %q", u.Commit, u.Problem, u.Error(), p)
		}
	}
}

func TestVerifyCommitsRange(t *testing.T) {
	gpg := signtest.GPG(t, "alice@example.com")
	ssh := signtest.SSH(t, "bob@example.com")
	keys := trust(t, gpg, ssh)
	r := newSignedRepo(t)

	old := r.commit(nil, "unsigned history before the first apply")
	first := r.commit(gpg, "first")
	t.Run("first apply checks the head only", func(t *testing.T) {
		wantUntrusted(t, r.verify(keys, "", first), nil)
		wantUntrusted(t, r.verify(keys, "", old), map[string]gitsource.Problem{old: gitsource.ProblemUnsigned})
	})

	a := r.commit(ssh, "signed with ssh")
	b := r.commit(gpg, "signed with gpg")
	t.Run("all signed", func(t *testing.T) {
		wantUntrusted(t, r.verify(keys, first, b), nil)
		wantUntrusted(t, r.verify(keys, b, b), nil)
	})

	unsigned := r.commit(nil, "unsigned in the middle")
	c := r.commit(gpg, "signed on top")
	t.Run("one unsigned in the middle", func(t *testing.T) {
		got := r.verify(keys, b, c)
		wantUntrusted(t, got, map[string]gitsource.Problem{unsigned: gitsource.ProblemUnsigned})
		if len(got) == 1 && (!strings.Contains(got[0].Error(), unsigned) || !strings.Contains(got[0].Error(), "unsigned in the middle")) {
			t.Errorf("message %q should name the commit and its subject", got[0].Error())
		}
		// Accepting the head alone is not enough: from the last applied
		// commit every commit counts.
		wantUntrusted(t, r.verify(keys, a, c), map[string]gitsource.Problem{unsigned: gitsource.ProblemUnsigned})
	})

	t.Run("key removed from the trusted set", func(t *testing.T) {
		wantUntrusted(t, r.verify(trust(t, gpg), first, b), map[string]gitsource.Problem{a: gitsource.ProblemUnknownKey})
		got := r.verify(trust(t, ssh), first, b)
		wantUntrusted(t, got, map[string]gitsource.Problem{b: gitsource.ProblemUnknownKey})
		if len(got) == 1 && !strings.Contains(got[0].Detail, "OpenPGP key") {
			t.Errorf("detail %q should name the OpenPGP key", got[0].Detail)
		}
	})

	t.Run("rollback to an older commit checks it", func(t *testing.T) {
		wantUntrusted(t, r.verify(keys, c, old), map[string]gitsource.Problem{old: gitsource.ProblemUnsigned})
		wantUntrusted(t, r.verify(keys, c, b), nil)
	})
}

func TestVerifyCommitsOtherKeyClaimingThePrincipal(t *testing.T) {
	alice := signtest.SSH(t, "alice@example.com")
	mallory := signtest.SSH(t, "alice@example.com") // another key, same principal
	mallorysGPG := signtest.GPG(t, "alice@example.com")
	keys := trust(t, alice)
	r := newSignedRepo(t)
	base := r.commit(alice, "base")
	m1 := r.commit(mallory, "ssh key claiming alice")
	m2 := r.commit(mallorysGPG, "gpg key claiming alice")
	got := r.verify(keys, base, m2)
	wantUntrusted(t, got, map[string]gitsource.Problem{m1: gitsource.ProblemUnknownKey, m2: gitsource.ProblemUnknownKey})
}

func TestVerifyCommitsTampered(t *testing.T) {
	for _, signer := range []struct {
		name string
		new  func(testing.TB, string) *signtest.Signer
	}{{"openpgp", signtest.GPG}, {"ssh", signtest.SSH}} {
		t.Run(signer.name, func(t *testing.T) {
			s := signer.new(t, "alice@example.com")
			r := newSignedRepo(t)
			base := r.commit(s, "base")
			good := r.commit(s, "grant web-01")
			// Rewrite the signed commit's message, keeping its signature: the
			// object git stores is what an attacker with push access can make.
			raw := r.git("cat-file", "commit", good)
			forged := strings.Replace(raw, "grant web-01", "grant web-99", 1)
			if forged == raw {
				t.Fatal("the commit was not changed")
			}
			tampered := hashObject(t, r.dir, forged+"\n")
			r.git("update-ref", "refs/heads/main", tampered)
			got := r.verify(trust(t, s), base, tampered)
			wantUntrusted(t, got, map[string]gitsource.Problem{tampered: gitsource.ProblemBadSignature})
			wantUntrusted(t, r.verify(trust(t, s), base, good), nil)
		})
	}
}

func hashObject(t *testing.T, dir, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "commit")
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return signtest.Git(t, dir, nil, "hash-object", "-t", "commit", "-w", f)
}

func TestVerifyCommitsForcePushAndMerges(t *testing.T) {
	s := signtest.SSH(t, "alice@example.com")
	keys := trust(t, s)
	r := newSignedRepo(t)
	unsignedRoot := r.commit(nil, "unsigned root")
	mergeBase := r.commit(s, "merge base")
	applied := r.commit(nil, "applied but unsigned") // applied before signing was turned on

	// The branch is rewritten: the applied commit is dropped, new commits
	// follow the merge base.
	r.git("reset", "-q", "--hard", mergeBase)
	r.commit(s, "rewritten")
	r.git("checkout", "-q", "-b", "side")
	sideUnsigned := r.commit(nil, "unsigned on a side branch")
	r.git("checkout", "-q", "main")
	r.commit(s, "on main")
	signtest.Git(t, r.dir, s, append(s.Config(), "merge", "-q", "--no-ff", "-S", "-m", "merge side", "side")...)
	merge := r.git("rev-parse", "HEAD")

	got := r.verify(keys, applied, merge)
	wantUntrusted(t, got, map[string]gitsource.Problem{sideUnsigned: gitsource.ProblemUnsigned})
	for _, u := range got {
		if u.Commit == unsignedRoot || u.Commit == applied {
			t.Errorf("commit %s is not new since the merge base, yet reported", u.Commit)
		}
	}

	// An unsigned merge counts too.
	r.git("checkout", "-q", "-b", "side2", mergeBase)
	r.commit(s, "signed on side2")
	r.git("checkout", "-q", "main")
	r.git("merge", "-q", "--no-ff", "-m", "unsigned merge", "side2")
	unsignedMerge := r.git("rev-parse", "HEAD")
	wantUntrusted(t, r.verify(keys, merge, unsignedMerge), map[string]gitsource.Problem{unsignedMerge: gitsource.ProblemUnsigned})
}

func TestTrustedKeysFiles(t *testing.T) {
	s := signtest.SSH(t, "alice@example.com")
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, tc := range map[string]struct {
		content string
		err     string // "" when it loads
	}{
		"git namespace":           {content: s.AllowedSigner(`namespaces="git,file"`)},
		"no options, quoted name": {content: `"alice@example.com" ` + strings.TrimPrefix(s.AllowedSigner(""), "alice@example.com ")},
		"empty":                   {content: "# nobody\n\n", err: "no keys"},
		"garbage":                 {content: "# ok\nalice@example.com ssh-ed25519 notbase64\n", err: ":2: key"},
		"cert authority":          {content: s.AllowedSigner("cert-authority"), err: "cert-authority"},
		"unknown option":          {content: s.AllowedSigner(`frobnicate="1"`), err: "unknown option"},
		"bad time":                {content: s.AllowedSigner(`valid-before="tomorrow"`), err: "valid-before"},
		"private pgp key":         {content: "-----BEGIN PGP PRIVATE KEY BLOCK-----\n", err: "private key"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := gitsource.LoadTrustedKeys([]string{file(strings.ReplaceAll(name, " ", "-"), tc.content)})
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("load: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("load: got %v, want an error containing %q", err, tc.err)
			}
		})
	}
	if _, err := gitsource.LoadTrustedKeys(nil); err == nil {
		t.Error("no files: want an error")
	}
	if _, err := gitsource.LoadTrustedKeys([]string{filepath.Join(dir, "missing")}); err == nil {
		t.Error("a missing file: want an error")
	}
}

func TestVerifyCommitsSSHKeyLimits(t *testing.T) {
	s := signtest.SSH(t, "alice@example.com")
	r := newSignedRepo(t)
	base := r.commit(s, "base")
	head := r.commit(s, "head")
	dir := t.TempDir()
	for name, options := range map[string]string{
		"other namespace": `namespaces="file"`,
		"negated git":     `namespaces="*,!git"`,
		"expired":         `valid-before="20000101Z"`,
		"not yet valid":   `valid-after="29990101"`,
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			if err := os.WriteFile(f, []byte(s.AllowedSigner(options)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			keys, err := gitsource.LoadTrustedKeys([]string{f})
			if err != nil {
				t.Fatal(err)
			}
			wantUntrusted(t, r.verify(keys, base, head), map[string]gitsource.Problem{head: gitsource.ProblemKeyNotValid})
		})
	}
}

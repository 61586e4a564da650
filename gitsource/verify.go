package gitsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"

	"github.com/certops/certops/spec"
)

// Problem is why a commit is not trusted.
type Problem string

// The problems a commit can have.
const (
	ProblemUnsigned     Problem = "unsigned"
	ProblemUnknownKey   Problem = "unknown key"   // signed by a key that is not trusted
	ProblemKeyNotValid  Problem = "key not valid" // trusted key, but expired, revoked, outside its validity or namespaces
	ProblemBadSignature Problem = "bad signature" // the signature does not verify, or cannot be read
)

// UntrustedCommit is a commit whose signature was not accepted.
type UntrustedCommit struct {
	Commit  string // 40 hex digits
	Summary string // first line of the message
	Author  string
	Problem Problem
	Detail  string
}

func (u UntrustedCommit) Error() string { return "commit " + u.Commit + ": " + u.reason() }

// reason is the message without the commit: the problem, what the commit
// is, and the detail.
func (u UntrustedCommit) reason() string {
	msg := fmt.Sprintf("%s (%q by %s)", u.Problem, u.Summary, u.Author)
	if u.Detail != "" {
		msg += ": " + u.Detail
	}
	return msg
}

// sshNamespace is the namespace git signs commits in (ssh-keygen -Y sign -n git).
const sshNamespace = "git"

// VerifyCommits checks the signature of head and of every commit reachable
// from head but not from base (git rev-list head ^base, merge commits
// included) against keys, and returns the commits that fail, newest first.
// After a force-push the range starts at the merge base of base and head. An
// empty base, or a base that is not in the repository, checks head alone;
// head equal to base checks nothing. An error is a failure to read the
// history (a missing object, e.g. in a shallow clone), not an untrusted
// commit.
func (r *Repo) VerifyCommits(keys *TrustedKeys, base, head string) ([]UntrustedCommit, error) {
	if base == head {
		return nil, nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	commits, err := r.newCommits(base, head)
	if err != nil {
		return nil, err
	}
	var bad []UntrustedCommit
	for _, c := range commits {
		if problem, detail := keys.check(c); problem != "" {
			summary, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
			bad = append(bad, UntrustedCommit{Commit: c.Hash.String(), Summary: summary,
				Author: fmt.Sprintf("%s <%s>", c.Author.Name, c.Author.Email), Problem: problem, Detail: detail})
		}
	}
	return bad, nil
}

// newCommits returns head and the commits reachable from head but not from
// base, in breadth-first order from head. The caller holds mu.
func (r *Repo) newCommits(base, head string) ([]*object.Commit, error) {
	seen := map[plumbing.Hash]bool{} // base and its ancestors
	if base != "" && r.hasObject(plumbing.NewHash(base)) {
		queue := []plumbing.Hash{plumbing.NewHash(base)}
		for len(queue) > 0 {
			h := queue[0]
			queue = queue[1:]
			if seen[h] {
				continue
			}
			c, err := r.repo.CommitObject(h)
			if errors.Is(err, plumbing.ErrObjectNotFound) {
				continue // the end of a shallow history: nothing older is known
			}
			if err != nil {
				return nil, fmt.Errorf("gitsource: read commit %s: %w", h, err)
			}
			seen[h] = true
			queue = append(queue, c.ParentHashes...)
		}
	}
	headCommit, err := r.commit(head)
	if err != nil {
		return nil, err
	}
	out := []*object.Commit{headCommit}
	if len(seen) == 0 {
		return out, nil // first apply: the head's signature covers its whole tree
	}
	queued := map[plumbing.Hash]bool{headCommit.Hash: true}
	queue := append([]plumbing.Hash(nil), headCommit.ParentHashes...)
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		if seen[h] || queued[h] {
			continue
		}
		queued[h] = true
		c, err := r.repo.CommitObject(h)
		if err != nil {
			return nil, fmt.Errorf("gitsource: read commit %s (is the clone shallow? fetch the whole history): %w", h, err)
		}
		out = append(out, c)
		queue = append(queue, c.ParentHashes...)
	}
	return out, nil
}

// check verifies one commit's signature; it returns "" when a trusted key
// made it.
func (k *TrustedKeys) check(c *object.Commit) (Problem, string) {
	sig := c.PGPSignature
	if sig == "" {
		return ProblemUnsigned, ""
	}
	if n := strings.Count("\n"+sig, "\n-----BEGIN "); n > 1 {
		return ProblemBadSignature, fmt.Sprintf("%d signature blocks; want one", n)
	}
	payload := &plumbing.MemoryObject{}
	if err := c.EncodeWithoutSignature(payload); err != nil {
		return ProblemBadSignature, err.Error()
	}
	rd, err := payload.Reader()
	if err != nil {
		return ProblemBadSignature, err.Error()
	}
	defer rd.Close()
	switch {
	case strings.HasPrefix(sig, "-----BEGIN PGP SIGNATURE-----"):
		return k.checkPGP(rd, sig)
	case strings.HasPrefix(sig, "-----BEGIN SSH SIGNATURE-----"):
		return k.checkSSH(rd, sig, c)
	default:
		first, _, _ := strings.Cut(sig, "\n")
		return ProblemBadSignature, fmt.Sprintf("unsupported signature format %q", first)
	}
}

func (k *TrustedKeys) checkPGP(payload io.Reader, sig string) (Problem, string) {
	issuer := pgpIssuer(sig)
	if len(k.pgp) == 0 {
		return ProblemUnknownKey, "OpenPGP key " + issuer + " (no OpenPGP keys are trusted)"
	}
	signer, err := openpgp.CheckArmoredDetachedSignature(k.pgp, payload, strings.NewReader(sig), nil)
	switch {
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return ProblemUnknownKey, "OpenPGP key " + issuer
	case errors.Is(err, pgperrors.ErrKeyExpired), errors.Is(err, pgperrors.ErrKeyRevoked), errors.Is(err, pgperrors.ErrSignatureExpired):
		return ProblemKeyNotValid, fmt.Sprintf("OpenPGP key %s: %v", issuer, err)
	case err != nil:
		return ProblemBadSignature, fmt.Sprintf("OpenPGP key %s: %v", issuer, err)
	case signer == nil:
		return ProblemBadSignature, "no signer"
	}
	return "", ""
}

// pgpIssuer names the key an armored signature claims, for messages.
func pgpIssuer(sig string) string {
	block, err := armor.Decode(strings.NewReader(sig))
	if err != nil {
		return "(unreadable signature)"
	}
	p, err := packet.NewReader(block.Body).Next()
	s, ok := p.(*packet.Signature)
	switch {
	case err != nil || !ok:
		return "(unreadable signature)"
	case s.IssuerFingerprint != nil:
		return fmt.Sprintf("%X", s.IssuerFingerprint)
	case s.IssuerKeyId != nil:
		return fmt.Sprintf("%016X", *s.IssuerKeyId)
	}
	return "(no issuer)"
}

func (k *TrustedKeys) checkSSH(payload io.Reader, armored string, c *object.Commit) (Problem, string) {
	sig, err := sshsig.Unarmor([]byte(armored))
	if err != nil {
		return ProblemBadSignature, "SSH signature: " + err.Error()
	}
	fp := ssh.FingerprintSHA256(sig.PublicKey)
	if sig.Namespace != sshNamespace {
		return ProblemBadSignature, fmt.Sprintf("SSH signature by %s in namespace %q, want %q", fp, sig.Namespace, sshNamespace)
	}
	want := sig.PublicKey.Marshal()
	var found bool
	var invalid []string
	for _, s := range k.ssh {
		if !bytes.Equal(s.key.Marshal(), want) {
			continue
		}
		found = true
		if err := s.allows(sshNamespace, c.Committer.When); err != nil {
			invalid = append(invalid, err.Error())
			continue
		}
		if err := sshsig.Verify(payload, sig, s.key, sig.HashAlgorithm, sshNamespace); err != nil {
			return ProblemBadSignature, fmt.Sprintf("SSH key %s (%s): %v", fp, s.principals, err)
		}
		return "", ""
	}
	if !found {
		return ProblemUnknownKey, "SSH key " + fp
	}
	return ProblemKeyNotValid, fmt.Sprintf("SSH key %s: %s", fp, strings.Join(invalid, "; "))
}

// Verifier checks commit signatures in a repository against trusted keys.
// It is the reconciler's reconcile.CommitVerifier, and `certops plan`'s.
type Verifier struct {
	keys *TrustedKeys
	repo func() (*Repo, error)
}

// Verifier returns a Verifier of this repository's commits.
func (r *Repo) Verifier(keys *TrustedKeys) Verifier {
	return Verifier{keys: keys, repo: func() (*Repo, error) { return r, nil }}
}

// Verifier returns a Verifier of the source's commits, once it is opened.
func (s *LazySource) Verifier(keys *TrustedKeys) Verifier {
	return Verifier{keys: keys, repo: s.opened}
}

// VerifyCommits checks head and the commits new since base (see
// Repo.VerifyCommits) and returns one error per untrusted commit, with the
// commit as its File.
func (v Verifier) VerifyCommits(_ context.Context, base, head string) (spec.ErrorList, error) {
	repo, err := v.repo()
	if err != nil {
		return nil, err
	}
	bad, err := repo.VerifyCommits(v.keys, base, head)
	if err != nil {
		return nil, err
	}
	var errs spec.ErrorList
	for _, u := range bad {
		errs = append(errs, spec.Error{File: "commit " + u.Commit, Message: u.reason()})
	}
	return errs, nil
}

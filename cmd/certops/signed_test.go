package main

import (
	"context"
	"strings"
	"testing"

	"github.com/certops/certops/gitsource/signtest"
)

// TestPlanVerifyCommits: `certops plan --verify-commits` checks the pull
// request's commits (base..head) as the reconciler checks the commits since
// the last applied one, offline, and lists every untrusted commit.
func TestPlanVerifyCommits(t *testing.T) {
	ctx := context.Background()
	gpg := signtest.GPG(t, "alice@example.com")
	ssh := signtest.SSH(t, "bob@example.com")
	dir := t.TempDir()
	signtest.Git(t, dir, nil, "init", "-q", "-b", "main")
	writeFiles(t, dir, map[string]string{"base.yaml": issuerDoc, "certs.yaml": certDoc("shop", "shop.example.com")})
	signtest.Commit(t, dir, nil, "unsigned base: before the range, not checked")
	signtest.Git(t, dir, nil, "checkout", "-q", "-b", "feature")
	writeFiles(t, dir, map[string]string{"certs.yaml": certDoc("shop", "www.example.com")})
	signtest.Commit(t, dir, gpg, "signed with gpg")
	writeFiles(t, dir, map[string]string{"blog.yaml": certDoc("blog", "blog.example.com")})
	signtest.Commit(t, dir, ssh, "signed with ssh")
	plan := func(env map[string]string, args ...string) (int, string, string) {
		return cli(ctx, env, append([]string{"plan", "--repo", dir, "--base", "main", "--head", "HEAD"}, args...)...)
	}

	if code, stdout, stderr := plan(nil, "--verify-commits", "--trusted-keys", gpg.Trusted, "--trusted-keys", ssh.Trusted); code != 2 || !strings.Contains(stdout, "blog") {
		t.Fatalf("all signed: exit %d, want 2 with the plan\n%s%s", code, stdout, stderr)
	}
	env := map[string]string{"CERTOPS_VERIFY_COMMITS": "true", "CERTOPS_TRUSTED_KEYS": gpg.Trusted + "," + ssh.Trusted}
	if code, _, stderr := plan(env); code != 2 {
		t.Fatalf("all signed, keys from the environment: exit %d, want 2\n%s", code, stderr)
	}

	writeFiles(t, dir, map[string]string{"wiki.yaml": certDoc("wiki", "wiki.example.com")})
	unsigned := signtest.Commit(t, dir, nil, "unsigned in the pull request")
	writeFiles(t, dir, map[string]string{"docs.yaml": certDoc("docs", "docs.example.com")})
	signtest.Commit(t, dir, gpg, "signed on top")
	code, stdout, stderr := plan(env)
	if code != 1 || stdout != "" {
		t.Fatalf("an unsigned commit: exit %d, stdout %q; want 1 and no plan\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "commit "+unsigned+": unsigned") || !strings.Contains(stderr, "1 error(s)") {
		t.Errorf("stderr should name the unsigned commit %s, and only it:\n%s", unsigned, stderr)
	}
	// Markdown says why there is no plan, for the PR comment.
	code, stdout, _ = plan(env, "--format", "markdown")
	if code != 1 || !strings.Contains(stdout, "#### The head has commits not signed by a trusted key and would be refused") ||
		!strings.Contains(stdout, "\ncommit "+unsigned+": unsigned") {
		t.Errorf("an unsigned commit, markdown: exit %d, want 1 with the commit listed\n%s", code, stdout)
	}
	// Without the SSH key, its commit is untrusted too.
	code, _, stderr = plan(nil, "--verify-commits", "--trusted-keys", gpg.Trusted)
	if code != 1 || !strings.Contains(stderr, "unknown key") || !strings.Contains(stderr, "2 error(s)") {
		t.Errorf("without the SSH key: exit %d, want 1 naming the unsigned and the SSH-signed commit\n%s", code, stderr)
	}
	// Without --verify-commits nothing is checked.
	if code, _, stderr := plan(nil); code != 2 {
		t.Errorf("without --verify-commits: exit %d, want 2\n%s", code, stderr)
	}
	for name, args := range map[string][]string{
		"no keys":             {"--verify-commits"},
		"keys without verify": {"--trusted-keys", gpg.Trusted},
		"a bad key file":      {"--verify-commits", "--trusted-keys", dir + "/certs.yaml"},
	} {
		if code, _, stderr := plan(nil, args...); code != 1 || !strings.Contains(stderr, "--") {
			t.Errorf("%s: exit %d, want 1 with the flag named\n%s", name, code, stderr)
		}
	}
}

// TestServeVerifyCommitsUsage: serve refuses a half-configured verification
// before it touches the database.
func TestServeVerifyCommitsUsage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for name, env := range map[string]map[string]string{
		"no keys":             {"CERTOPS_VERIFY_COMMITS": "true"},
		"keys without verify": {"CERTOPS_TRUSTED_KEYS": dir + "/missing"},
		"a missing key file":  {"CERTOPS_VERIFY_COMMITS": "true", "CERTOPS_TRUSTED_KEYS": dir + "/missing"},
	} {
		code, _, stderr := cli(ctx, env, "serve", "--database-url", "postgres://nobody@127.0.0.1:1/x", "--repo", "https://example.com/x.git")
		if code != 2 || !strings.Contains(stderr, "trusted-keys") {
			t.Errorf("%s: exit %d, want 2 naming --trusted-keys\n%s", name, code, stderr)
		}
	}
	code, _, stderr := cli(ctx, map[string]string{"CERTOPS_VERIFY_COMMITS": "true", "CERTOPS_TRUSTED_KEYS": signtest.SSH(t, "a@example.com").Trusted},
		"serve", "--database-url", "postgres://nobody@127.0.0.1:1/x", "--repo", dir)
	if code != 2 || !strings.Contains(stderr, "plain directory") {
		t.Errorf("a plain directory: exit %d, want 2\n%s", code, stderr)
	}
}

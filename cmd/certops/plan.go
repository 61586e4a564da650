package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"

	"github.com/certops/certops/failure"
	"github.com/certops/certops/gitsource"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/review"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// planCmd: certops plan --repo DIR --base REV --head REV [--format text|markdown|json]
// [--verify-commits --trusted-keys F…] — exit 0 when nothing changes, 2 when
// something does, 1 on error (an invalid head, or an untrusted commit between
// base and head: the errors go to stderr, and with markdown or json stdout
// also says why there is no plan). An invalid base is diffed with a warning.
// Bad usage exits 1 too (not 2 as for the other commands): see planExit.
func planCmd(env cliEnv, args []string) int {
	f := newFlagSet(env, "plan")
	repo := f.String("repo", ".", "local git repository")
	base := f.String("base", "", "base revision (branch, tag or commit), e.g. main")
	head := f.String("head", "HEAD", "head revision")
	path := f.String("path", ".", "directory of the config inside the repository")
	format := f.String("format", "text", "output format: text, markdown or json")
	var verify bool
	var keyFiles []string
	f.BoolEnv(&verify, "verify-commits", false, "fail (exit 1) unless the head and every commit between base and head are signed by a trusted key, as certops serve --verify-commits requires")
	f.StringsEnv(&keyFiles, "trusted-keys", "with --verify-commits: an armored OpenPGP public keyring or an SSH allowed_signers file")
	if err := f.parseNoArgs(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return planExit(failure.Wrap(failure.Usage, err))
	}
	if *base == "" {
		fmt.Fprintln(env.stderr, "certops plan: --base is required")
		return planExit(errUsage)
	}
	render := map[string]func(review.Report) error{
		"text":     func(r review.Report) error { return r.Text(env.stdout) },
		"markdown": func(r review.Report) error { return r.Markdown(env.stdout) },
		"json":     func(r review.Report) error { return r.JSON(env.stdout) },
	}[*format]
	if render == nil {
		fmt.Fprintf(env.stderr, "certops plan: --format: want text, markdown or json, got %q\n", *format)
		return planExit(errUsage)
	}
	keys, err := trustedKeys(verify, keyFiles)
	if err != nil {
		fmt.Fprintln(env.stderr, "certops plan:", err)
		return planExit(err)
	}
	rep, warnings, err := buildPlan(*repo, *path, *base, *head, keys)
	for _, w := range warnings {
		fmt.Fprintln(env.stderr, "certops plan: warning:", w)
	}
	var invalid *invalidRevision
	switch {
	case errors.As(err, &invalid):
		for _, e := range invalid.errs {
			fmt.Fprintln(env.stderr, e.Error())
		}
		fmt.Fprintf(env.stderr, "certops plan: %s\n", invalid.Error())
		// Markdown and JSON go to a PR comment or a tool: they say why there
		// is no plan. Text leaves stdout empty, as the errors are on stderr.
		if *format != "text" {
			if err := render(rep); err != nil {
				fmt.Fprintln(env.stderr, "certops plan:", err)
			}
		}
		return 1
	case err != nil:
		fmt.Fprintln(env.stderr, "certops plan:", err)
		return 1
	}
	if err := render(rep); err != nil {
		fmt.Fprintln(env.stderr, "certops plan:", err)
		return 1
	}
	if len(rep.Changes) == 0 {
		return 0
	}
	return 2
}

// planExit is plan's exit code for err: failure.ExitCode's, except that
// bad usage exits 1 rather than 2, because plan's 2 means "changes" (the
// external contract CI scripts rely on).
func planExit(err error) int {
	if failure.KindOf(err) == failure.Usage {
		return 1
	}
	return failure.ExitCode(err)
}

// invalidRevision is a revision the reconciler would refuse before
// planning it: one that fails validation, or has untrusted commits.
type invalidRevision struct {
	rev  string
	errs spec.ErrorList
	msg  string // what is wrong with it, e.g. "is invalid"
}

func (e *invalidRevision) Error() string {
	return fmt.Sprintf("revision %s %s: %d error(s)", e.rev, e.msg, len(e.errs))
}

// buildPlan loads both revisions offline and computes what applying head
// over base would do. An invalid head is an *invalidRevision, returned with
// the report that says so (review.Refused); an invalid base (a pull request
// fixing a broken main) is diffed as far as its files parse, with a warning.
// With keys, head and every commit reachable from it but not from base must
// be signed by one of them, as the reconciler requires of the commits since
// the last applied one.
func buildPlan(repoDir, path, baseRev, headRev string, keys *gitsource.TrustedKeys) (review.Report, []string, error) {
	repo, err := gitsource.OpenLocal(repoDir)
	if err != nil {
		return review.Report{}, nil, err
	}
	baseCommit, err := repo.Resolve(baseRev)
	if err != nil {
		return review.Report{}, nil, fmt.Errorf("resolve %q: %w", baseRev, err)
	}
	headCommit, err := repo.Resolve(headRev)
	if err != nil {
		return review.Report{}, nil, fmt.Errorf("resolve %q: %w", headRev, err)
	}
	refused := func(warnings []string, invalid *invalidRevision) (review.Report, []string, error) {
		rep := review.Refused(invalid.msg, invalid.errs)
		rep.Base, rep.Head, rep.BaseCommit, rep.HeadCommit = baseRev, headRev, baseCommit, headCommit
		return rep, warnings, invalid
	}
	if keys != nil {
		err := verifyPlan(repo, keys, baseCommit, headRev, headCommit)
		var invalid *invalidRevision
		if errors.As(err, &invalid) {
			return refused(nil, invalid)
		}
		if err != nil {
			return review.Report{}, nil, err
		}
	}
	tree := func(commit string) (fs.FS, error) {
		fsys, err := repo.FS(commit)
		if err != nil {
			return nil, err
		}
		if path != "." && path != "" {
			if fsys, err = fs.Sub(fsys, path); err != nil {
				return nil, fmt.Errorf("--path: %w", err)
			}
		}
		return fsys, nil
	}
	baseFS, err := tree(baseCommit)
	if err != nil {
		return review.Report{}, nil, err
	}
	headFS, err := tree(headCommit)
	if err != nil {
		return review.Report{}, nil, err
	}
	var warnings []string
	baseObjects := map[spec.Key]*spec.Object{}
	var l reconcile.Loader
	if st, errs := l.Load(baseFS, baseRev, nil); len(errs) == 0 {
		baseObjects = st.Objects
	} else {
		warnings = append(warnings, fmt.Sprintf("base revision %s is invalid (%d errors); diffing against the objects that parse", baseRev, len(errs)))
		for _, f := range spec.ReadFiles(baseFS) {
			for _, o := range f.Objects {
				baseObjects[o.Key()] = o
			}
		}
	}
	// The same two steps as the reconciler's: load the head whole, then plan
	// it against the base as the stored state, with the prune guard.
	headRevision := state.Revision{Ref: headRev, Commit: headCommit}
	desired, err := l.LoadRevision(headFS, headRevision, nil)
	var stalled *reconcile.StalledError
	if errors.As(err, &stalled) {
		return refused(warnings, &invalidRevision{rev: headRev, errs: stalled.Errors, msg: "is invalid"})
	}
	stored := make(map[spec.Key]string, len(baseObjects))
	for k, o := range baseObjects {
		stored[k] = o.Hash()
	}
	var guard reconcile.PruneGuard
	plan, err := guard.Plan(headRevision, desired, stored)
	rep := review.Build(baseObjects, desired.State.Objects, plan)
	rep.Base, rep.Head, rep.BaseCommit, rep.HeadCommit = baseRev, headRev, baseCommit, headCommit
	if errors.As(err, &stalled) {
		for _, e := range stalled.Errors {
			rep.PruneWarnings = append(rep.PruneWarnings, "the reconciler will refuse this revision: "+e.Message)
		}
	}
	return rep, warnings, nil
}

// verifyPlan checks the commits of base..head (and head itself) with the
// reconciler's rule, reconcile.VerifyRevision.
func verifyPlan(repo *gitsource.Repo, keys *gitsource.TrustedKeys, base, headRev, head string) error {
	err := reconcile.VerifyRevision(context.Background(), repo.Verifier(keys), base, state.Revision{Ref: headRev, Commit: head})
	var stalled *reconcile.StalledError
	if errors.As(err, &stalled) {
		return &invalidRevision{rev: headRev, errs: stalled.Errors, msg: "has commits not signed by a trusted key"}
	}
	return err
}

package main

import (
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
// — exit 0 when nothing changes, 2 when something does, 1 on error. Bad
// usage exits 1 too (not 2 as for the other commands): see planExit.
func planCmd(env cliEnv, args []string) int {
	f := newFlagSet(env, "plan")
	repo := f.String("repo", ".", "local git repository")
	base := f.String("base", "", "base revision (branch, tag or commit), e.g. main")
	head := f.String("head", "HEAD", "head revision")
	path := f.String("path", ".", "directory of the config inside the repository")
	format := f.String("format", "text", "output format: text, markdown or json")
	if err := f.parse(args); err != nil {
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
	rep, warnings, err := buildPlan(*repo, *path, *base, *head)
	for _, w := range warnings {
		fmt.Fprintln(env.stderr, "certops plan: warning:", w)
	}
	var invalid *invalidRevision
	switch {
	case errors.As(err, &invalid):
		for _, e := range invalid.errs {
			fmt.Fprintln(env.stderr, e.Error())
		}
		fmt.Fprintf(env.stderr, "certops plan: revision %s is invalid: %d error(s)\n", invalid.rev, len(invalid.errs))
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

// invalidRevision is a revision that fails validation.
type invalidRevision struct {
	rev  string
	errs spec.ErrorList
}

func (e *invalidRevision) Error() string {
	return fmt.Sprintf("revision %s is invalid: %d error(s)", e.rev, len(e.errs))
}

// buildPlan loads both revisions offline and computes what applying head
// over base would do. An invalid head is an error; an invalid base (a pull
// request fixing a broken main) is diffed as far as its files parse, with a
// warning.
func buildPlan(repoDir, path, baseRev, headRev string) (review.Report, []string, error) {
	repo, err := gitsource.OpenLocal(repoDir)
	if err != nil {
		return review.Report{}, nil, err
	}
	tree := func(rev string) (fs.FS, error) {
		commit, err := repo.Resolve(rev)
		if err != nil {
			return nil, fmt.Errorf("resolve %q: %w", rev, err)
		}
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
	baseFS, err := tree(baseRev)
	if err != nil {
		return review.Report{}, nil, err
	}
	headFS, err := tree(headRev)
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
	headRevision := state.Revision{Ref: headRev, Commit: headRev}
	desired, err := l.LoadRevision(headFS, headRevision, nil)
	var stalled *reconcile.StalledError
	if errors.As(err, &stalled) {
		return review.Report{}, warnings, &invalidRevision{rev: headRev, errs: stalled.Errors}
	}
	stored := make(map[spec.Key]string, len(baseObjects))
	for k, o := range baseObjects {
		stored[k] = o.Hash()
	}
	var guard reconcile.PruneGuard
	plan, err := guard.Plan(headRevision, desired, stored)
	rep := review.Build(baseObjects, desired.State.Objects, plan)
	rep.Base, rep.Head = baseRev, headRev
	if errors.As(err, &stalled) {
		for _, e := range stalled.Errors {
			rep.PruneWarnings = append(rep.PruneWarnings, "the reconciler will refuse this revision: "+e.Message)
		}
	}
	return rep, warnings, nil
}

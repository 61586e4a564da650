package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/certops/certops/gitsource"
	"github.com/certops/certops/reconcile"
	"github.com/certops/certops/review"
	"github.com/certops/certops/spec"
)

// planCmd: certops plan --repo DIR --base REV --head REV [--format text|markdown|json]
// — exit 0 when nothing changes, 2 when something does, 1 on error.
func planCmd(env cliEnv, args []string) int {
	f := newFlagSet(env, "plan")
	repo := f.String("repo", ".", "local git repository")
	base := f.String("base", "", "base revision (branch, tag or commit), e.g. main")
	head := f.String("head", "HEAD", "head revision")
	path := f.String("path", ".", "directory of the config inside the repository")
	format := f.String("format", "text", "output format: text, markdown or json")
	if f.parse(args) != nil {
		return 1
	}
	if *base == "" {
		fmt.Fprintln(env.stderr, "certops plan: --base is required")
		return 1
	}
	render := map[string]func(review.Report) error{
		"text":     func(r review.Report) error { return r.Text(env.stdout) },
		"markdown": func(r review.Report) error { return r.Markdown(env.stdout) },
		"json":     func(r review.Report) error { return r.JSON(env.stdout) },
	}[*format]
	if render == nil {
		fmt.Fprintf(env.stderr, "certops plan: --format: want text, markdown or json, got %q\n", *format)
		return 1
	}
	rep, err := buildPlan(*repo, *path, *base, *head)
	if err != nil {
		var errs spec.ErrorList
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(env.stderr, e.Error())
			}
		}
		fmt.Fprintln(env.stderr, "certops plan:", err.Error())
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

// buildPlan loads both revisions offline and computes what applying head
// over base would do.
func buildPlan(repoDir, path, baseRev, headRev string) (review.Report, error) {
	repo, err := gitsource.OpenLocal(repoDir)
	if err != nil {
		return review.Report{}, err
	}
	load := func(rev string) (spec.State, fs.FS, error) {
		commit, err := repo.Resolve(rev)
		if err != nil {
			return spec.State{}, nil, fmt.Errorf("resolve %q: %w", rev, err)
		}
		fsys, err := repo.FS(commit)
		if err != nil {
			return spec.State{}, nil, err
		}
		if path != "." && path != "" {
			if fsys, err = fs.Sub(fsys, path); err != nil {
				return spec.State{}, nil, fmt.Errorf("--path: %w", err)
			}
		}
		var l reconcile.Loader
		st, errs := l.Load(fsys, commit, nil)
		if len(errs) > 0 {
			return spec.State{}, nil, fmt.Errorf("revision %s is invalid: %w", rev, errs)
		}
		return st, fsys, nil
	}
	baseState, _, err := load(baseRev)
	if err != nil {
		return review.Report{}, err
	}
	headState, headFS, err := load(headRev)
	if err != nil {
		return review.Report{}, err
	}
	stored := make(map[spec.Key]string, len(baseState.Objects))
	for k, o := range baseState.Objects {
		stored[k] = o.Hash()
	}
	plan := reconcile.Compute(headState.Objects, stored)
	rep := review.Build(baseState.Objects, headState.Objects, plan)
	rep.Base, rep.Head = baseRev, headRev
	allowed, err := reconcile.ReadAllowPrune(headFS)
	if err != nil {
		return review.Report{}, err
	}
	var guard reconcile.PruneGuard
	for _, w := range guard.Check(plan, stored, allowed) {
		rep.PruneWarnings = append(rep.PruneWarnings, "the reconciler will refuse this revision: "+w+
			"; commit "+reconcile.AllowPruneFile+" to allow it")
	}
	return rep, nil
}

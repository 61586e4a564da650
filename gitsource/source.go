package gitsource

import (
	"context"
	"io/fs"

	"github.com/certops/certops/state"
)

// Source adapts a Repo to the reconciler's reconcile.Source.
type Source struct{ Repo *Repo }

// Head returns the head of the configured ref (a cheap ref check when unchanged).
func (s Source) Head(ctx context.Context) (state.Revision, error) {
	rev, _, err := s.Repo.Head(ctx)
	return rev, err
}

// FS returns the config tree of a commit.
func (s Source) FS(_ context.Context, commit string) (fs.FS, error) { return s.Repo.FS(commit) }

// ChangedFiles lists the config files that differ between two commits.
func (s Source) ChangedFiles(_ context.Context, from, to string) ([]string, error) {
	return s.Repo.ChangedFiles(from, to)
}

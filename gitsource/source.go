package gitsource

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"sync"

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

// LazySource is a Source that opens its repository (clone or cache, then
// fetch) on first use, and again after every failed attempt, so that a
// replica started while the remote is unreachable still serves what the
// database holds: each failed open is a failed fetch, which the reconciler
// retries with backoff. Only the leader's reconciler uses its source, so a
// follower never clones.
type LazySource struct {
	cfg    Config
	logger *slog.Logger

	mu   sync.Mutex
	repo *Repo
}

// NewLazySource checks cfg as far as it can without the network (the URL,
// the path, the credentials and CA files) and returns the source.
func NewLazySource(cfg Config, logger *slog.Logger) (*LazySource, error) {
	if _, err := cfg.prepare(); err != nil {
		return nil, err
	}
	return &LazySource{cfg: cfg, logger: logger}, nil
}

// open returns the repository, opening it if it is not yet.
func (s *LazySource) open(ctx context.Context) (*Repo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repo != nil {
		return s.repo, nil
	}
	repo, err := Open(ctx, s.cfg, s.logger)
	if err != nil {
		return nil, err
	}
	s.repo = repo
	return repo, nil
}

// opened is the repository if it is open; FS and ChangedFiles are only
// asked for after a Head that opened it.
func (s *LazySource) opened() (*Repo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repo == nil {
		return nil, errors.New("gitsource: repository not opened yet")
	}
	return s.repo, nil
}

// Head opens the repository if needed and returns the head of the ref.
func (s *LazySource) Head(ctx context.Context) (state.Revision, error) {
	repo, err := s.open(ctx)
	if err != nil {
		return state.Revision{}, err
	}
	return Source{Repo: repo}.Head(ctx)
}

// FS returns the config tree of a commit.
func (s *LazySource) FS(ctx context.Context, commit string) (fs.FS, error) {
	repo, err := s.opened()
	if err != nil {
		return nil, err
	}
	return Source{Repo: repo}.FS(ctx, commit)
}

// ChangedFiles lists the config files that differ between two commits.
func (s *LazySource) ChangedFiles(ctx context.Context, from, to string) ([]string, error) {
	repo, err := s.opened()
	if err != nil {
		return nil, err
	}
	return Source{Repo: repo}.ChangedFiles(ctx, from, to)
}

// Close closes the repository if it was opened.
func (s *LazySource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repo == nil {
		return nil
	}
	return s.repo.Close()
}

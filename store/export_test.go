package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// SetBeforeCommit makes every write transaction of s run f just before commit.
func SetBeforeCommit(s *Store, f func(context.Context, pgx.Tx) error) { s.beforeCommit = f }

// URL is the database URL s was opened with.
func URL(s *Store) string { return s.url }

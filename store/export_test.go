package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// SetBeforeCommit makes every write transaction of s run f just before commit.
func SetBeforeCommit(s *Store, f func(context.Context, pgx.Tx) error) { s.beforeCommit = f }

// SetLeaseCheck sets how often leases of s check their connection.
func SetLeaseCheck(s *Store, every time.Duration) { s.leaseCheck = every }

// URL is the database URL s was opened with.
func URL(s *Store) string { return s.url }

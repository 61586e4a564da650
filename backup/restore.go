package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/certops/certops/migrations"
)

// ErrNotEmpty is returned (wrapped) by Restore when the target database
// already has tables and AllowNonEmpty is not set.
var ErrNotEmpty = errors.New("database is not empty")

// RestoreOptions configure Restore.
type RestoreOptions struct {
	Tools Tools
	// AllowNonEmpty restores into a database that has tables, dropping the
	// dump's objects first (pg_restore --clean --if-exists). Tables the dump
	// does not have are left alone.
	AllowNonEmpty bool
}

// RestoreReport is the outcome of Restore.
type RestoreReport struct {
	// SchemaVersion is the restored database's migration version, and
	// Latest the version this binary migrates to.
	SchemaVersion, Latest int64
}

// Restore checks file and restores it into the database in one transaction,
// then reads the restored schema version. It refuses a database with any
// table unless opts.AllowNonEmpty, and a dump without certops' schema
// version table.
func Restore(ctx context.Context, databaseURL, file string, opts RestoreOptions) (RestoreReport, error) {
	if err := opts.Tools.Check(ctx, file); err != nil {
		return RestoreReport{}, err
	}
	tables, err := userTables(ctx, databaseURL)
	if err != nil {
		return RestoreReport{}, err
	}
	if len(tables) > 0 && !opts.AllowNonEmpty {
		return RestoreReport{}, fmt.Errorf("backup: restore: %w: it has %d tables (%s); restore into an empty database, "+
			"or allow dropping and replacing the dump's objects", ErrNotEmpty, len(tables), preview(tables, 5))
	}
	if err := opts.Tools.restore(ctx, databaseURL, file, len(tables) > 0); err != nil {
		return RestoreReport{}, err
	}
	return schemaVersion(ctx, databaseURL)
}

// userTables lists the tables outside the system schemas.
func userTables(ctx context.Context, databaseURL string) ([]string, error) {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("backup: connect to the database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p')
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND n.nspname NOT LIKE 'pg\_toast%'
		  AND n.nspname NOT LIKE 'pg\_temp%'
		ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("backup: list tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("backup: list tables: %w", err)
	}
	return tables, nil
}

// schemaVersion reads the goose version of the restored database.
func schemaVersion(ctx context.Context, databaseURL string) (RestoreReport, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return RestoreReport{}, fmt.Errorf("backup: parse database URL: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	var present bool
	if err := db.QueryRowContext(ctx, "SELECT to_regclass('goose_db_version') IS NOT NULL").Scan(&present); err != nil {
		return RestoreReport{}, fmt.Errorf("backup: check schema version: %w", err)
	}
	if !present {
		return RestoreReport{}, errors.New("backup: restored, but the dump has no goose_db_version table: " +
			"it is not a certops database")
	}
	var rep RestoreReport
	if rep.SchemaVersion, err = migrations.Version(ctx, db); err != nil {
		return RestoreReport{}, fmt.Errorf("backup: %w", err)
	}
	if rep.Latest, err = migrations.Latest(ctx, db); err != nil {
		return RestoreReport{}, fmt.Errorf("backup: %w", err)
	}
	if rep.SchemaVersion == 0 {
		return rep, errors.New("backup: restored, but the dump records no applied migration: it is not a certops database")
	}
	return rep, nil
}

func preview(list []string, n int) string {
	if len(list) <= n {
		return strings.Join(list, ", ")
	}
	return strings.Join(list[:n], ", ") + ", …"
}

package main

import (
	"context"
	"fmt"

	"github.com/certops/certops/store"
)

// migrateCmd applies the database migrations and exits (the Helm hook runs it).
func migrateCmd(ctx context.Context, env cliEnv, args []string) int {
	f := newFlagSet(env, "migrate")
	var url string
	f.stringVar(&url, "database-url", "", "PostgreSQL connection URL")
	newLogger := f.logFlags()
	if f.parse(args) != nil {
		return 1
	}
	logger, err := newLogger()
	if err != nil {
		fmt.Fprintln(env.stderr, "certops migrate:", err)
		return 1
	}
	if url == "" {
		fmt.Fprintln(env.stderr, "certops migrate: --database-url (CERTOPS_DATABASE_URL) is required")
		return 1
	}
	st, err := store.Open(ctx, url, logger)
	if err != nil {
		fmt.Fprintln(env.stderr, "certops migrate:", err)
		return 1
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		fmt.Fprintln(env.stderr, "certops migrate:", err)
		return 1
	}
	fmt.Fprintln(env.stdout, "migrations applied")
	return 0
}

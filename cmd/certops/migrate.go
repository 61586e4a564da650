package main

import (
	"context"
	"fmt"
	"time"
)

// migrateCmd applies the database migrations and exits (the Helm hook runs it).
func migrateCmd(ctx context.Context, env cliEnv, args []string) int {
	f := newFlagSet(env, "migrate")
	var url string
	var wait time.Duration
	f.stringVar(&url, "database-url", "", "PostgreSQL connection URL")
	f.durationVar(&wait, "database-wait", 5*time.Minute, "how long to wait for the database to become reachable")
	newLogger := f.logFlags()
	if err := f.parse(args); err != nil {
		return parseExit(err)
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
	st, err := openStore(ctx, url, wait, logger)
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

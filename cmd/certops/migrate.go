package main

import (
	"context"
	"fmt"
	"time"

	"github.com/certops/certops/failure"
	"github.com/certops/certops/store"
)

// migrateCmd applies the database migrations and exits (the Helm hook runs it).
func migrateCmd(ctx context.Context, env cliEnv, args []string) int {
	f := newFlagSet(env, "migrate")
	var url string
	var wait time.Duration
	f.StringEnv(&url, "database-url", "", "PostgreSQL connection URL")
	f.DurationEnv(&wait, "database-wait", 5*time.Minute, "how long to wait for the database to become reachable")
	newLogger := f.logFlags()
	if err := f.parseNoArgs(args); err != nil {
		return parseExit(err)
	}
	logger, err := newLogger()
	if err != nil {
		return env.fail("certops migrate", err)
	}
	if url == "" {
		return env.fail("certops migrate", failure.New(failure.Usage, "--database-url (CERTOPS_DATABASE_URL) is required"))
	}
	st, err := store.OpenWait(ctx, url, wait, store.Options{}, logger)
	if err != nil {
		return env.fail("certops migrate", err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return env.fail("certops migrate", err)
	}
	fmt.Fprintln(env.stdout, "migrations applied")
	return 0
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/certops/certops/envflag"
)

// flagSet is an envflag.Set of a certops command: its flags default to
// CERTOPS_* environment variables (--database-url ↔ CERTOPS_DATABASE_URL).
type flagSet struct {
	*envflag.Set
	env cliEnv
}

func newFlagSet(env cliEnv, name string) *flagSet {
	return &flagSet{Set: envflag.New(name, "CERTOPS_", env.getenv, env.stderr), env: env}
}

// parseExit is the exit code after a failed parse: 0 when help was asked for.
func parseExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 1
}

// parse parses args. The flag package prints its own errors; environment
// errors are printed here.
func (f *flagSet) parse(args []string) error {
	err := f.Set.Parse(args)
	if envErr := (*envflag.EnvError)(nil); errors.As(err, &envErr) {
		fmt.Fprintln(f.env.stderr, "certops:", err)
	}
	return err
}

// logFlags adds --log-format and --log-level and returns a constructor of
// the logger, writing to stderr.
func (f *flagSet) logFlags() func() (*slog.Logger, error) { return f.LogFlags(f.env.stderr) }

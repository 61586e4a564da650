package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/certops/certops/envflag"
	"github.com/certops/certops/failure"
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

// errUsage is bad usage that the flag package or the command has already
// explained on stderr.
var errUsage = failure.New(failure.Usage, "bad usage")

// parseExit is the exit code after a failed parse: 0 when help was asked
// for, the exit code of bad usage (2) otherwise. (plan is the exception:
// see planCmd.)
func parseExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return failure.ExitCode(failure.Wrap(failure.Usage, err))
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
// the logger, writing to stderr. Its errors are bad usage: a bad flag value.
func (f *flagSet) logFlags() func() (*slog.Logger, error) {
	newLogger := f.LogFlags(f.env.stderr)
	return func() (*slog.Logger, error) {
		logger, err := newLogger()
		return logger, failure.Wrap(failure.Usage, err)
	}
}

// parseNoArgs parses the args of a command that takes no positional
// arguments: a stray one (plan --base A B) is bad usage, said on stderr.
func (f *flagSet) parseNoArgs(args []string) error {
	if err := f.parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q: %s takes no arguments", f.Arg(0), f.Name())
		fmt.Fprintf(f.env.stderr, "certops %s: %v\n", f.Name(), err)
		return err
	}
	return nil
}

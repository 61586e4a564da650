package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// flagSet is a flag.FlagSet whose flags default to CERTOPS_* environment
// variables: --database-url ↔ CERTOPS_DATABASE_URL.
type flagSet struct {
	*flag.FlagSet
	env  cliEnv
	errs []error
}

func newFlagSet(env cliEnv, name string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	return &flagSet{FlagSet: fs, env: env}
}

// envName is the environment variable of a flag: CERTOPS_ + upper snake case.
func envName(flagName string) string {
	return "CERTOPS_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (f *flagSet) stringVar(p *string, name, def, help string) {
	if v := f.env.getenv(envName(name)); v != "" {
		def = v
	}
	f.StringVar(p, name, def, help+" (env "+envName(name)+")")
}

func (f *flagSet) durationVar(p *time.Duration, name string, def time.Duration, help string) {
	if v := f.env.getenv(envName(name)); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s: %w", envName(name), err))
		} else {
			def = d
		}
	}
	f.DurationVar(p, name, def, help+" (env "+envName(name)+")")
}

func (f *flagSet) boolVar(p *bool, name string, def bool, help string) {
	switch v := strings.ToLower(f.env.getenv(envName(name))); v {
	case "":
	case "1", "true", "yes":
		def = true
	case "0", "false", "no":
		def = false
	default:
		f.errs = append(f.errs, fmt.Errorf("%s: want true or false, got %q", envName(name), v))
	}
	f.BoolVar(p, name, def, help+" (env "+envName(name)+")")
}

// parseExit is the exit code after a failed parse: 0 when help was asked for.
func parseExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 1
}

// parse parses args and reports environment errors; it prints its own errors.
func (f *flagSet) parse(args []string) error {
	if err := f.Parse(args); err != nil {
		return err
	}
	if err := errors.Join(f.errs...); err != nil {
		fmt.Fprintln(f.env.stderr, "certops:", err)
		return err
	}
	return nil
}

// logFlags adds --log-format and --log-level and returns a constructor.
func (f *flagSet) logFlags() func() (*slog.Logger, error) {
	var format, level string
	f.stringVar(&format, "log-format", "text", "log format: text or json")
	f.stringVar(&level, "log-level", "info", "log level: debug, info, warn or error")
	return func() (*slog.Logger, error) {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("--log-level: %w", err)
		}
		opts := &slog.HandlerOptions{Level: lv}
		switch format {
		case "text":
			return slog.New(slog.NewTextHandler(f.env.stderr, opts)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(f.env.stderr, opts)), nil
		default:
			return nil, fmt.Errorf("--log-format: want text or json, got %q", format)
		}
	}
}

// Package envflag gives the certops commands flags that default to
// environment variables (--database-url ↔ CERTOPS_DATABASE_URL), and the log
// flags they share. An invalid environment value is an error of Parse, just
// like an invalid flag.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/certops/certops/redact"
)

// Set is a flag.FlagSet whose *Env flags default to environment variables
// named prefix + the flag name in upper snake case.
type Set struct {
	*flag.FlagSet
	prefix string
	getenv func(string) string
	errs   []error
}

// New returns a Set that writes usage and errors to output.
func New(name, prefix string, getenv func(string) string, output io.Writer) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	return &Set{FlagSet: fs, prefix: prefix, getenv: getenv}
}

// EnvName is the environment variable of a flag.
func (s *Set) EnvName(flagName string) string {
	return s.prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (s *Set) help(name, help string) string { return help + " (env " + s.EnvName(name) + ")" }

// StringEnv defines a string flag defaulting to its environment variable.
func (s *Set) StringEnv(p *string, name, def, help string) {
	if v := s.getenv(s.EnvName(name)); v != "" {
		def = v
	}
	s.StringVar(p, name, def, s.help(name, help))
}

// DurationEnv defines a duration flag defaulting to its environment variable.
func (s *Set) DurationEnv(p *time.Duration, name string, def time.Duration, help string) {
	if v := s.getenv(s.EnvName(name)); v != "" {
		d, err := ParseDuration(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s: %w", s.EnvName(name), err))
		} else {
			def = d
		}
	}
	s.DurationVar(p, name, def, s.help(name, help))
}

// DurationVar defines a duration flag, as flag.FlagSet's does, but a bad
// value is explained (a number without a unit says so) and the help says
// what a duration looks like.
func (s *Set) DurationVar(p *time.Duration, name string, def time.Duration, help string) {
	*p = def
	s.Var((*durationValue)(p), name, help+" (a `duration`: 30s, 5m, 1h30m)")
}

// Duration is DurationVar returning the variable.
func (s *Set) Duration(name string, def time.Duration, help string) *time.Duration {
	p := new(time.Duration)
	s.DurationVar(p, name, def, help)
	return p
}

// durationValue is the flag.Value of DurationVar.
type durationValue time.Duration

func (d *durationValue) String() string { return (*time.Duration)(d).String() }

func (d *durationValue) Set(v string) error {
	parsed, err := ParseDuration(v)
	if err != nil {
		return err
	}
	*d = durationValue(parsed)
	return nil
}

// ParseDuration is time.ParseDuration with errors a person acts on: a
// number without a unit ("5") is told to add one.
func ParseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err == nil {
		return d, nil
	}
	if _, numErr := strconv.ParseFloat(strings.TrimSpace(v), 64); numErr == nil {
		return 0, fmt.Errorf("%q has no unit: write it as %ss, %sm or %sh", v, v, v, v)
	}
	return 0, fmt.Errorf("%q is not a duration: write it like 30s, 5m or 1h30m", v)
}

// IntEnv defines an integer flag defaulting to its environment variable.
func (s *Set) IntEnv(p *int, name string, def int, help string) {
	if v := s.getenv(s.EnvName(name)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s: want an integer, got %q", s.EnvName(name), v))
		} else {
			def = n
		}
	}
	s.IntVar(p, name, def, s.help(name, help))
}

// BoolEnv defines a boolean flag defaulting to its environment variable
// (1/true/yes or 0/false/no).
func (s *Set) BoolEnv(p *bool, name string, def bool, help string) {
	switch v := strings.ToLower(s.getenv(s.EnvName(name))); v {
	case "":
	case "1", "true", "yes":
		def = true
	case "0", "false", "no":
		def = false
	default:
		s.errs = append(s.errs, fmt.Errorf("%s: want true or false, got %q", s.EnvName(name), v))
	}
	s.BoolVar(p, name, def, s.help(name, help))
}

// StringsEnv defines a repeatable string flag defaulting to its environment
// variable, a comma-separated list. Giving the flag replaces that default;
// giving it again adds to the list. Empty items are dropped.
func (s *Set) StringsEnv(p *[]string, name, help string) {
	*p = SplitList(s.getenv(s.EnvName(name)))
	s.Var(&stringList{p: p}, name, s.help(name, help+"; repeatable, or comma-separated"))
}

// stringList is the flag.Value of StringsEnv.
type stringList struct {
	p   *[]string
	set bool // the flag was given: the environment's default is replaced
}

func (l *stringList) String() string {
	if l == nil || l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l *stringList) Set(v string) error {
	if !l.set {
		*l.p, l.set = nil, true
	}
	*l.p = append(*l.p, SplitList(v)...)
	return nil
}

// SplitList splits a comma-separated value, trimming items and dropping
// empty ones.
func SplitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// EnvError is Parse's error for invalid environment values. (Errors in the
// flags themselves are the flag package's, which prints them.)
type EnvError struct{ Err error }

func (e *EnvError) Error() string { return e.Err.Error() }
func (e *EnvError) Unwrap() error { return e.Err }

// Parse parses args; after the flags it reports invalid environment values
// as an *EnvError.
func (s *Set) Parse(args []string) error {
	if err := s.FlagSet.Parse(args); err != nil {
		return err
	}
	if err := errors.Join(s.errs...); err != nil {
		return &EnvError{Err: err}
	}
	return nil
}

// LogFlags adds --log-format (text|json) and --log-level and returns the
// constructor of the logger they describe, writing to w.
func (s *Set) LogFlags(w io.Writer) func() (*slog.Logger, error) {
	var format, level string
	s.StringEnv(&format, "log-format", "text", "log format: text or json")
	s.StringEnv(&level, "log-level", "info", "log level: debug, info, warn or error")
	return func() (*slog.Logger, error) { return Logger(format, level, w) }
}

// Logger builds a text or JSON logger at level, writing to w.
func Logger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: replaceAttr}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: want text or json, got %q", format)
	}
}

// replaceAttr masks the credentials of every URL in a string or error
// attribute of a log record (see package redact), and writes durations as
// strings ("1.5s") in every format (the JSON handler would write
// nanoseconds).
func replaceAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindDuration:
		a.Value = slog.StringValue(a.Value.Duration().String())
	case slog.KindString:
		if s := a.Value.String(); strings.Contains(s, "://") {
			a.Value = slog.StringValue(redact.Text(s))
		}
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok && err != nil {
			if s := err.Error(); strings.Contains(s, "://") {
				a.Value = slog.StringValue(redact.Text(s))
			}
		}
	}
	return a
}

// Approx is a duration as a person reads it in a status line: 45s, 12m,
// 5h, 81d, 3y (rounded down). Both binaries' status output use it.
func Approx(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	case d < 3*365*24*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	return fmt.Sprintf("%dy", int(d.Hours()/24/365))
}

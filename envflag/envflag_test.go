package envflag_test

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certops/certops/envflag"
)

func TestEnvDefaultsAndErrors(t *testing.T) {
	env := map[string]string{"X_NAME": "from-env", "X_WAIT": "2s", "X_ON": "yes"}
	s := envflag.New("t", "X_", func(k string) string { return env[k] }, io.Discard)
	var name string
	var wait time.Duration
	var on bool
	s.StringEnv(&name, "name", "def", "")
	s.DurationEnv(&wait, "wait", time.Second, "")
	s.BoolEnv(&on, "on", false, "")
	if err := s.Parse([]string{"--wait", "3s"}); err != nil {
		t.Fatal(err)
	}
	if name != "from-env" || wait != 3*time.Second || !on {
		t.Errorf("got name=%q wait=%v on=%v; want the environment's name and on, the flag's wait", name, wait, on)
	}

	env = map[string]string{"X_WAIT": "soon", "X_ON": "maybe"}
	s = envflag.New("t", "X_", func(k string) string { return env[k] }, io.Discard)
	s.DurationEnv(&wait, "wait", time.Second, "")
	s.BoolEnv(&on, "on", false, "")
	var envErr *envflag.EnvError
	if err := s.Parse(nil); !errors.As(err, &envErr) {
		t.Fatalf("Parse with bad environment values: got %v, want an *EnvError", err)
	}
	if _, err := envflag.Logger("xml", "info", io.Discard); err == nil {
		t.Error("Logger accepted format xml")
	}
}

func TestStringsEnv(t *testing.T) {
	env := map[string]string{"X_KEYS": "a.asc, b.pub,,"}
	parse := func(args ...string) []string {
		t.Helper()
		s := envflag.New("t", "X_", func(k string) string { return env[k] }, io.Discard)
		var keys []string
		s.StringsEnv(&keys, "keys", "")
		if err := s.Parse(args); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	if got := parse(); !slices.Equal(got, []string{"a.asc", "b.pub"}) {
		t.Errorf("from the environment: got %q, want [a.asc b.pub]", got)
	}
	if got := parse("--keys", "c", "--keys", "d,e"); !slices.Equal(got, []string{"c", "d", "e"}) {
		t.Errorf("flags over the environment: got %q, want [c d e] (the flags replace the environment's list)", got)
	}
}

// Both formats write durations as strings, and mask URL credentials.
func TestLoggerFormats(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var b strings.Builder
		logger, err := envflag.Logger(format, "info", &b)
		if err != nil {
			t.Fatal(err)
		}
		logger.Info("fetched", "took", 1500*time.Millisecond, "url", "https://user:secret@git.example.com/repo.git")
		out := b.String()
		if !strings.Contains(out, "1.5s") || strings.Contains(out, "1500000000") {
			t.Errorf("%s: the duration is not written as 1.5s: %s", format, out)
		}
		if strings.Contains(out, "secret") {
			t.Errorf("%s: credentials of a URL are logged: %s", format, out)
		}
	}
	if _, err := envflag.Logger("xml", "info", io.Discard); err == nil {
		t.Error("an unknown format is accepted")
	}
}

// TestDurationsExplainTheirErrors: a number without a unit, in a flag or
// its variable, is told to add one; a good value parses.
func TestDurationsExplainTheirErrors(t *testing.T) {
	for _, tc := range []struct {
		flag, env string
		want      string // in the error; "" for none
	}{
		{"--interval=5", "", `"5" has no unit: write it as 5s, 5m or 5h`},
		{"--interval=1.5", "", `"1.5" has no unit`},
		{"--interval=soon", "", `"soon" is not a duration: write it like 30s, 5m or 1h30m`},
		{"", "5", `CERTOPS_INTERVAL: "5" has no unit`},
		{"--interval=90s", "", ""},
	} {
		var out strings.Builder
		s := envflag.New("test", "CERTOPS_", func(string) string { return tc.env }, &out)
		var d time.Duration
		s.DurationEnv(&d, "interval", time.Minute, "poll interval")
		var args []string
		if tc.flag != "" {
			args = []string{tc.flag}
		}
		err := s.Parse(args)
		if tc.want == "" {
			if err != nil || d != 90*time.Second {
				t.Errorf("%s: got %v, %v; want 1m30s", tc.flag, d, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error()+out.String(), tc.want) {
			t.Errorf("%s %s: error %v, output %q; want %q", tc.flag, tc.env, err, out.String(), tc.want)
		}
	}
}

func TestApprox(t *testing.T) {
	for d, want := range map[time.Duration]string{
		45 * time.Second: "45s", 12 * time.Minute: "12m", 47 * time.Hour: "47h",
		81 * 24 * time.Hour: "81d", 4 * 365 * 24 * time.Hour: "4y",
	} {
		if got := envflag.Approx(d); got != want {
			t.Errorf("Approx(%v) = %q, want %q", d, got, want)
		}
	}
}

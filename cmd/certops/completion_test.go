package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestCompletionTableMatchesParser: the completion table has exactly the
// commands of the usage text, and each command exactly the flags its
// parser declares (as -h lists them), bool flags marked as such.
func TestCompletionTableMatchesParser(t *testing.T) {
	cmds := completionTable()
	var inTable []string
	for _, c := range cmds {
		inTable = append(inTable, c.name)
	}
	var inUsage []string
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z]+)\s{2,}`).FindAllStringSubmatch(usage, -1) {
		inUsage = append(inUsage, m[1])
	}
	slices.Sort(inTable)
	slices.Sort(inUsage)
	if !slices.Equal(inTable, inUsage) {
		t.Errorf("commands: table %v, usage %v", inTable, inUsage)
	}

	flagLine := regexp.MustCompile(`(?m)^  -(\S+)(?: (.+))?$`)
	for _, c := range cmds {
		args := []string{c.name, "-h"}
		if c.name == "ca" {
			args = []string{"ca", "init", "-h"}
		}
		if c.name == "version" {
			continue // takes no flags: it prints and exits
		}
		code, _, help := cli(context.Background(), nil, args...)
		if code != 0 {
			t.Errorf("%q: exit %d", args, code)
		}
		parsed := map[string]bool{} // name → bool flag
		for _, m := range flagLine.FindAllStringSubmatch(help, -1) {
			parsed[m[1]] = m[2] == ""
		}
		table := map[string]bool{}
		for _, f := range c.flags {
			table[f.name] = f.bool
		}
		for name, isBool := range parsed {
			tb, ok := table[name]
			switch {
			case !ok:
				t.Errorf("%s: flag -%s of the parser is not in the completion table", c.name, name)
			case tb != isBool:
				t.Errorf("%s: flag -%s: bool %v in the table, %v in the parser", c.name, name, tb, isBool)
			}
		}
		for name := range table {
			if _, ok := parsed[name]; !ok {
				t.Errorf("%s: flag -%s of the completion table is not the parser's", c.name, name)
			}
		}
	}
}

// certopsOnPath puts a `certops` on PATH that runs this test binary as
// certops, and returns the PATH value.
func certopsOnPath(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	script := "#!/bin/sh\n" + runAsCertops + "=1 exec " + os.Args[0] + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "certops"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir + string(os.PathListSeparator) + os.Getenv("PATH")
}

// TestBashCompletion sources the script in a real bash and completes
// partial words.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	path := certopsOnPath(t)
	complete := func(words ...string) []string {
		t.Helper()
		script := `source <(certops completion bash) || exit 1
complete -p certops
COMP_WORDS=(` + strings.Join(quoteAll(words), " ") + `)
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_certops
printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if lines[0] != "complete -F _certops certops" {
			t.Fatalf("complete -p certops: %q", lines[0])
		}
		return lines[1:]
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"certops", "re"}, []string{"restore", "reconcile"}},
		{[]string{"certops", "get", "cer"}, []string{"certificates"}},
		{[]string{"certops", "get", "-o", ""}, []string{"table", "wide", "json", "yaml"}},
		{[]string{"certops", "get", "certificates", "-o", "w"}, []string{"wide"}},
		{[]string{"certops", "describe", "a"}, []string{"agent"}},
		{[]string{"certops", "reconcile", "--w"}, []string{"--wait"}},
		{[]string{"certops", "completion", "z"}, []string{"zsh"}},
		{[]string{"certops", "plan", "--format", "m"}, []string{"markdown"}},
		{[]string{"certops", "serve", "--log-level", "d"}, []string{"debug"}},
	} {
		if got := complete(tc.words...); !slices.Equal(got, tc.want) {
			t.Errorf("%q: completed %q, want %q", tc.words, got, tc.want)
		}
	}
}

func quoteAll(words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = "'" + w + "'"
	}
	return out
}

// TestZshAndFishCompletion loads the zsh and fish scripts into those
// shells when they are installed.
func TestZshAndFishCompletion(t *testing.T) {
	path := certopsOnPath(t)
	for _, tc := range []struct{ shell, script, want string }{
		{"zsh", "autoload -U compinit && compinit -u && source <(certops completion zsh) && print -r -- $_comps[certops]", "_certops"},
		{"fish", "certops completion fish | source; complete -C 'certops get cer'", "certificates"},
	} {
		t.Run(tc.shell, func(t *testing.T) {
			bin, err := exec.LookPath(tc.shell)
			if err != nil {
				t.Skipf("%s is not installed", tc.shell)
			}
			cmd := exec.Command(bin, "-c", tc.script)
			cmd.Env = append(os.Environ(), "PATH="+path)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("%s: %v\n%s", tc.shell, err, out)
			}
		})
	}
}

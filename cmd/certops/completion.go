package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/certops/certops/failure"
)

// completionFlag is one flag of a command as completion offers it: a bool
// flag takes no value, one with values completes them, any other takes a
// file name (or a value the shell cannot guess).
type completionFlag struct {
	name   string
	bool   bool
	values []string
}

// completionCommand is a command, the words of its positional arguments
// (kinds, subcommands, shells) and its flags.
type completionCommand struct {
	name, desc string
	args       []string
	flags      []completionFlag
}

func flagNames(bools bool, names ...string) []completionFlag {
	out := make([]completionFlag, len(names))
	for i, n := range names {
		out[i] = completionFlag{name: n, bool: bools}
	}
	return out
}

func joinFlags(lists ...[]completionFlag) []completionFlag {
	var out []completionFlag
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// completionTable is the one table the completion scripts are generated
// from. TestCompletionTableMatchesParser checks it against the usage text
// and every command's flags (-h), so it cannot drift from the parser.
func completionTable() []completionCommand {
	logFlags := []completionFlag{{name: "log-format", values: []string{"text", "json"}}, {name: "log-level", values: []string{"debug", "info", "warn", "error"}}}
	apiClientFlags := []completionFlag{{name: "server"}, {name: "token-file"}, {name: "ca-file"}}
	return []completionCommand{
		{name: "serve", desc: "run the reconciler, the status API and the webhook receivers", flags: joinFlags(
			flagNames(false, "api-token-file", "ari-interval", "cache-dir", "database-url", "database-wait", "db-idle-in-transaction-timeout",
				"db-lock-timeout", "db-statement-timeout", "debug-listen", "full-compare-interval", "generic-webhook-secret-file",
				"git-ca-file", "git-known-hosts-file", "git-password-file", "git-ssh-key-file", "git-token-file", "git-username",
				"github-webhook-secret-file", "gitlab-webhook-token-file", "http-idle-timeout", "http-max-connections",
				"http-read-header-timeout", "http-read-timeout", "http-write-timeout", "interval", "keep-revisions",
				"keep-revisions-for", "keep-versions", "lease-ttl", "listen", "path", "prune-interval",
				"ref", "repo", "tls-cert-file", "tls-client-ca-file", "tls-dns-names", "tls-key-file", "tls-self-issuer", "trusted-keys"),
			flagNames(true, "migrations-via-hook", "per-certificate-metrics", "verify-commits"), logFlags)},
		{name: "migrate", desc: "apply database migrations and exit", flags: joinFlags(flagNames(false, "database-url", "database-wait"), logFlags)},
		{name: "validate", desc: "validate a config directory"},
		{name: "plan", desc: "offline diff between two revisions", flags: joinFlags(
			flagNames(false, "base", "head", "path", "repo", "trusted-keys"), flagNames(true, "verify-commits"),
			[]completionFlag{{name: "format", values: []string{"text", "markdown", "json"}}})},
		{name: "rules", desc: "print the Prometheus alerting rules", flags: joinFlags(
			flagNames(false, "name", "namespace", "runbook-base-url"),
			[]completionFlag{{name: "format", values: []string{"rules", "prometheusrule"}}})},
		{name: "demo", desc: "run everything locally on the bundled example repo", flags: joinFlags(
			flagNames(false, "dir", "duration", "listen"), flagNames(true, "keep"), logFlags)},
		{name: "ca", desc: "create a local CA", args: []string{"init"}, flags: joinFlags(
			flagNames(false, "common-name", "out", "permitted-dns", "validity"), flagNames(true, "force"),
			[]completionFlag{{name: "key-type", values: []string{"ecdsa", "rsa"}}})},
		{name: "backup", desc: "take a backup per the BackupPolicy", flags: joinFlags(
			flagNames(false, "database-url", "database-wait", "destination", "policy", "work-dir"), flagNames(true, "force"), logFlags)},
		{name: "restore", desc: "restore a backup into an empty database", flags: joinFlags(
			flagNames(false, "database-url", "file", "s3-access-key-id-env", "s3-credentials-file", "s3-endpoint", "s3-region",
				"s3-secret-access-key-env", "work-dir"), flagNames(true, "allow-non-empty"))},
		{name: "version", desc: "print the version"},
		{name: "status", desc: "the reconciler's status", flags: joinFlags(apiClientFlags,
			[]completionFlag{{name: "o", values: []string{outTable, outJSON, outYAML}}})},
		{name: "get", desc: "list certificates, agents or revisions", args: []string{"certificates", "agents", "revisions"},
			flags: joinFlags(apiClientFlags, flagNames(false, "l", "limit"), []completionFlag{{name: "o", values: []string{outTable, outWide, outJSON, outYAML}}})},
		{name: "describe", desc: "one certificate or agent in detail", args: []string{"certificate", "agent"},
			flags: joinFlags(apiClientFlags, []completionFlag{{name: "o", values: []string{outTable, outJSON, outYAML}}})},
		{name: "reconcile", desc: "ask the reconciler to fetch now", flags: joinFlags(apiClientFlags,
			flagNames(false, "timeout", "poll-interval"), flagNames(true, "wait"))},
		{name: "completion", desc: "print a shell completion script", args: []string{"bash", "zsh", "fish"}},
	}
}

// dash is how a flag is written: -o for one letter, --name otherwise.
func dash(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// completionCmd: certops completion bash|zsh|fish — print the script.
func completionCmd(env cliEnv, args []string) int {
	f := newFlagSet(env, "completion")
	f.Usage = func() {
		fmt.Fprint(env.stderr, `usage: certops completion bash|zsh|fish

Prints a completion script. Load it with:
  bash:  source <(certops completion bash)         (or save it in /etc/bash_completion.d/certops)
  zsh:   source <(certops completion zsh)          (after compinit)
  fish:  certops completion fish | source          (or save it in ~/.config/fish/completions/certops.fish)
`)
	}
	if err := f.parse(args); err != nil {
		return parseExit(err)
	}
	if f.NArg() != 1 {
		return usageError(f, "completion takes one shell: bash, zsh or fish")
	}
	cmds := completionTable()
	switch f.Arg(0) {
	case "bash":
		writeBash(env.stdout, cmds)
	case "zsh":
		writeZsh(env.stdout, cmds)
	case "fish":
		writeFish(env.stdout, cmds)
	default:
		return env.fail("certops completion", failure.New(failure.Usage, fmt.Sprintf("unknown shell %q: want bash, zsh or fish", f.Arg(0))))
	}
	return 0
}

func commandNames(cmds []completionCommand) string {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.name
	}
	return strings.Join(names, " ")
}

// flagWords are a command's flags as written, sorted.
func flagWords(c completionCommand) string {
	var out []string
	for _, f := range c.flags {
		out = append(out, dash(f.name))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// valueFlagCases are a case statement's patterns (both spellings of each
// flag: Go's flag package takes -name and --name) for the flags with
// values, and for the other flags that take one.
func valueFlagCases(c completionCommand) (withValues []completionFlag, other []string) {
	for _, f := range c.flags {
		switch {
		case len(f.values) > 0:
			withValues = append(withValues, f)
		case !f.bool:
			other = append(other, "-"+f.name+"|--"+f.name)
		}
	}
	return withValues, other
}

func writeBash(w io.Writer, cmds []completionCommand) {
	fmt.Fprintf(w, `# bash completion for certops; generated by "certops completion bash".
_certops() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" cmd="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            -*) ;;
            *) cmd="${COMP_WORDS[i]}"; break ;;
        esac
    done
    if [[ -z "$cmd" ]]; then
        COMPREPLY=($(compgen -W "%s" -- "$cur"))
        return
    fi
    case "$cmd" in
`, commandNames(cmds))
	for _, c := range cmds {
		fmt.Fprintf(w, "        %s)\n", c.name)
		values, other := valueFlagCases(c)
		if len(values) > 0 || len(other) > 0 {
			fmt.Fprintln(w, `            case "$prev" in`)
			for _, f := range values {
				fmt.Fprintf(w, "                -%s|--%s) COMPREPLY=($(compgen -W %q -- \"$cur\")); return ;;\n", f.name, f.name, strings.Join(f.values, " "))
			}
			if len(other) > 0 {
				fmt.Fprintf(w, "                %s) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n", strings.Join(other, "|"))
			}
			fmt.Fprintln(w, `            esac`)
		}
		fmt.Fprintf(w, "            if [[ \"$cur\" == -* ]]; then\n                COMPREPLY=($(compgen -W %q -- \"$cur\"))\n", flagWords(c))
		if len(c.args) > 0 {
			fmt.Fprintf(w, "            else\n                COMPREPLY=($(compgen -W %q -- \"$cur\"))\n", strings.Join(c.args, " "))
		} else {
			fmt.Fprintf(w, "            else\n                COMPREPLY=($(compgen -f -- \"$cur\"))\n")
		}
		fmt.Fprintln(w, "            fi\n            ;;")
	}
	fmt.Fprint(w, `    esac
}
complete -F _certops certops
`)
}

func writeZsh(w io.Writer, cmds []completionCommand) {
	fmt.Fprint(w, `#compdef certops
# zsh completion for certops; generated by "certops completion zsh".
_certops() {
    local cur=${words[CURRENT]} prev=${words[CURRENT-1]}
    if (( CURRENT == 2 )); then
        local -a cmds
        cmds=(
`)
	for _, c := range cmds {
		fmt.Fprintf(w, "            %q\n", c.name+":"+c.desc)
	}
	fmt.Fprint(w, `        )
        _describe 'command' cmds
        return
    fi
    case ${words[2]} in
`)
	for _, c := range cmds {
		fmt.Fprintf(w, "        %s)\n", c.name)
		values, other := valueFlagCases(c)
		if len(values) > 0 || len(other) > 0 {
			fmt.Fprintln(w, "            case $prev in")
			for _, f := range values {
				fmt.Fprintf(w, "                -%s|--%s) compadd -- %s; return ;;\n", f.name, f.name, strings.Join(f.values, " "))
			}
			if len(other) > 0 {
				fmt.Fprintf(w, "                %s) _files; return ;;\n", strings.Join(other, "|"))
			}
			fmt.Fprintln(w, "            esac")
		}
		fmt.Fprintf(w, "            if [[ $cur == -* ]]; then\n                compadd -- %s\n", flagWords(c))
		if len(c.args) > 0 {
			fmt.Fprintf(w, "            else\n                compadd -- %s\n", strings.Join(c.args, " "))
		} else {
			fmt.Fprint(w, "            else\n                _files\n")
		}
		fmt.Fprintln(w, "            fi\n            ;;")
	}
	fmt.Fprint(w, `    esac
}
compdef _certops certops
`)
}

func writeFish(w io.Writer, cmds []completionCommand) {
	fmt.Fprintf(w, "# fish completion for certops; generated by \"certops completion fish\".\ncomplete -c certops -f\n")
	for _, c := range cmds {
		fmt.Fprintf(w, "complete -c certops -n __fish_use_subcommand -a %s -d %s\n", c.name, fishQuote(c.desc))
	}
	for _, c := range cmds {
		cond := fishQuote("__fish_seen_subcommand_from " + c.name)
		if len(c.args) > 0 {
			fmt.Fprintf(w, "complete -c certops -n %s -a %s\n", cond, fishQuote(strings.Join(c.args, " ")))
		}
		for _, f := range c.flags {
			opt := "-l " + f.name
			if len(f.name) == 1 {
				opt = "-s " + f.name
			}
			switch {
			case f.bool:
				fmt.Fprintf(w, "complete -c certops -n %s %s\n", cond, opt)
			case len(f.values) > 0:
				fmt.Fprintf(w, "complete -c certops -n %s %s -x -a %s\n", cond, opt, fishQuote(strings.Join(f.values, " ")))
			default:
				fmt.Fprintf(w, "complete -c certops -n %s %s -r -F\n", cond, opt)
			}
		}
	}
}

func fishQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}

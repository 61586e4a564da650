// Command certops is the certops reconciler and its command-line tools:
// serve, migrate, validate, plan, rules, demo, ca, backup and restore, and
// the operator's client of a running reconciler: status, get, describe,
// reconcile, completion.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/certops/certops/failure"
	"github.com/certops/certops/redact"
)

func main() {
	// SIGHUP too: closing the terminal of `certops demo` must stop its
	// PostgreSQL, not leave it running; every command shuts down gracefully.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: certops COMMAND [flags]

commands:
  serve       run the reconciler, the status API and the webhook receivers
  migrate     apply database migrations and exit
  validate    validate a config directory: certops validate [DIR]
  plan        offline diff between two revisions: certops plan --repo DIR --base REV --head REV
  rules       print the Prometheus alerting rules: certops rules [DIR] [--format rules|prometheusrule]
  demo        run everything locally on the bundled example repo
  ca          create a local CA: certops ca init --out DIR
  backup      take a backup per the BackupPolicy: certops backup [--destination DIR] [--force]
  restore     restore a backup into an empty database: certops restore --file FILE
  version     print the version

operator commands (talk to a running reconciler: --server, --token-file, --ca-file):
  status      the reconciler's status: revisions, conditions, errors, alerts
  get         list objects: certops get certificates|agents|revisions [-l k=v] [-o table|wide|json|yaml]
  describe    one object in detail: certops describe certificate|agent NAME
  reconcile   ask the reconciler to fetch now: certops reconcile [--wait] [--timeout 2m]
  completion  print a shell completion script: certops completion bash|zsh|fish

Run "certops COMMAND -h" for the flags of a command.
`

// run is the whole program; it returns the process exit code, through
// failure.ExitCode: 0 success, 1 error, 2 bad usage (an unknown command or
// flag, a missing or bad flag value), as certops-agent. plan's 2 means
// "changes" instead; see planCmd.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return failure.ExitCode(errUsage)
	}
	env := cliEnv{getenv: getenv, stdout: stdout, stderr: stderr}
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "serve":
		return serveCmd(ctx, env, rest)
	case "migrate":
		return migrateCmd(ctx, env, rest)
	case "validate":
		return validateCmd(env, rest)
	case "plan":
		return planCmd(env, rest)
	case "rules":
		return rulesCmd(env, rest)
	case "demo":
		return demoCmd(ctx, env, rest)
	case "ca":
		return caCmd(ctx, env, rest)
	case "backup":
		return backupCmd(ctx, env, rest)
	case "restore":
		return restoreCmd(ctx, env, rest)
	case "status":
		return statusCmd(ctx, env, rest)
	case "get":
		return getCmd(ctx, env, rest)
	case "describe":
		return describeCmd(ctx, env, rest)
	case "reconcile":
		return reconcileCmd(ctx, env, rest)
	case "completion":
		return completionCmd(env, rest)
	case "version":
		fmt.Fprintln(stdout, "certops", version)
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "certops: unknown command %q\n\n%s", cmd, usage)
		return failure.ExitCode(errUsage)
	}
}

// version is the release version; set with -ldflags "-X main.version=...".
var version = "dev"

// cliEnv is the process environment a command runs in.
type cliEnv struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// fail reports err on stderr under the command's name, with the
// credentials of any URL in it masked, and returns the exit code for it.
func (env cliEnv) fail(cmd string, err error) int {
	fmt.Fprintln(env.stderr, cmd+":", redact.Text(err.Error()))
	return failure.ExitCode(err)
}

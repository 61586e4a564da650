package main

import (
	"errors"
	"fmt"

	"github.com/certops/certops/failure"
	"github.com/certops/certops/spec"
)

// validateCmd: certops validate [DIR] — exit 0 when valid, 1 with one
// FILE:LINE: message line per error otherwise (2 for bad usage).
func validateCmd(env cliEnv, args []string) int {
	fs := newFlagSet(env, "validate")
	fs.Usage = func() { fmt.Fprintln(env.stderr, "usage: certops validate [DIR]") }
	if err := fs.parse(args); err != nil {
		return parseExit(err)
	}
	dir := "."
	switch fs.NArg() {
	case 0:
	case 1:
		dir = fs.Arg(0)
	default:
		fs.Usage()
		return failure.ExitCode(errUsage)
	}
	st, err := spec.LoadDir(dir)
	var errs spec.ErrorList
	switch {
	case errors.As(err, &errs):
		for _, e := range errs {
			fmt.Fprintln(env.stdout, e.Error())
		}
		fmt.Fprintf(env.stderr, "certops: %d error(s) in %s\n", len(errs), dir)
		return 1
	case err != nil:
		fmt.Fprintln(env.stderr, "certops:", err)
		return 1
	}
	fmt.Fprintf(env.stderr, "%s: %d objects, valid\n", dir, len(st.Objects))
	return 0
}

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/certops/certops/failure"
	"github.com/certops/certops/spec"
)

// validateCmd: certops validate [DIR|FILE] — exit 0 when valid, 1 with one
// FILE:LINE: message line per error otherwise (2 for bad usage). A FILE is
// checked on its own: everything but references to objects it does not
// define (validate the directory for those).
func validateCmd(env cliEnv, args []string) int {
	fs := newFlagSet(env, "validate")
	fs.Usage = func() { fmt.Fprintln(env.stderr, "usage: certops validate [DIR|FILE]") }
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
	var n int
	var err error
	if fi, statErr := os.Stat(dir); statErr == nil && !fi.IsDir() {
		n, err = validateFile(dir)
	} else {
		var st spec.State
		st, err = spec.LoadDir(dir)
		n = len(st.Objects)
	}
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
	fmt.Fprintf(env.stderr, "%s: %d objects, valid\n", dir, n)
	return 0
}

// validateFile parses one file and validates its objects as a part of a
// revision (spec.ValidatePart). It returns the number of objects, or an
// ErrorList.
func validateFile(path string) (int, error) {
	root, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return 0, err
	}
	defer root.Close()
	f := spec.ReadFile(root.FS(), filepath.Base(path))
	errs := append(f.Errors, spec.ValidatePart(f.Objects)...)
	if len(errs) > 0 {
		for i := range errs {
			errs[i].File = path // as the user named it
		}
		errs.Sort()
		return 0, errs
	}
	return len(f.Objects), nil
}

package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Every log line of every package uses one key style: snake_case keys, and
// "err" (never "error") for an error, so a log pipeline can rely on them.
// The keys checked are the string literals in key position of calls to
// Debug, Info, Warn, Error (message first) and With (keys from the first
// argument) on any receiver.
func TestLogKeysAreConsistent(t *testing.T) {
	key := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			first := 1 // Debug, Info, Warn, Error: the message, then key, value, …
			switch sel.Sel.Name {
			case "Debug", "Info", "Warn", "Error":
				if len(call.Args) == 0 || !isStringLit(call.Args[0]) {
					return true // not a slog call (say, t.Error)
				}
			case "With":
				first = 0
			default:
				return true
			}
			for i := first; i < len(call.Args); i += 2 {
				lit, ok := call.Args[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					break // an slog.Attr or a computed key: pairs no longer line up
				}
				k, _ := strconv.Unquote(lit.Value)
				checked++
				switch {
				case k == "error":
					t.Errorf("%s: log key %q: use \"err\"", fset.Position(lit.Pos()), k)
				case !key.MatchString(k):
					t.Errorf("%s: log key %q is not snake_case", fset.Position(lit.Pos()), k)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked only %d log keys: the walk missed the code", checked)
	}
}

func isStringLit(e ast.Expr) bool {
	lit, ok := e.(*ast.BasicLit)
	return ok && lit.Kind == token.STRING
}

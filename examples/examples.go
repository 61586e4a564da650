// Package examples holds the bundled example config repository, embedded so
// that `certops demo` and tests can use it without a checkout.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed all:config
var config embed.FS

// Config returns the example config repository, rooted at its top directory
// (issuers.yaml, agents.yaml, certificates/, ...).
func Config() fs.FS {
	sub, err := fs.Sub(config, "config")
	if err != nil {
		// "config" is a valid path embedded above; fs.Sub cannot fail for it.
		panic("examples: " + err.Error())
	}
	return sub
}

package spec

import (
	"fmt"
	"strings"
	"time"
)

// The external issuer: certops runs an operator's command that turns a CSR
// into a certificate chain (package issuer runs it and checks what it
// returns).

// ExternalIssuer obtains certificates by running a command on the
// reconciler: the CSR (PEM) on its standard input, a JSON description of
// the request in the environment, the certificate chain (PEM) on its
// standard output.
type ExternalIssuer struct {
	// Command is the argv, run without a shell; Command[0] is an
	// absolute path.
	Command []string `json:"command" yaml:"command"`
	// Timeout bounds a run (default DefaultExternalTimeout, at most
	// MaxExternalTimeout); the command's process group is killed after it.
	Timeout string `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// Env are extra environment variables of the command. They are stored
	// in Git: point the command at files for its secrets.
	Env map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	// CABundleFile holds the CA certificates (PEM) a returned certificate
	// must chain to.
	CABundleFile string `json:"caBundleFile" yaml:"caBundleFile"`
}

// External issuer limits.
const (
	DefaultExternalTimeout = 30 * time.Second
	MaxExternalTimeout     = 10 * time.Minute
	// ExternalEnvPrefix starts the variables certops sets itself; spec.external.env
	// may not set them.
	ExternalEnvPrefix = "CERTOPS_"
)

// TimeoutDuration is the timeout of a run: Timeout parsed, or
// DefaultExternalTimeout when it is empty (or invalid, which the loader
// refuses).
func (e *ExternalIssuer) TimeoutDuration() time.Duration {
	if d, err := time.ParseDuration(e.Timeout); err == nil && d > 0 {
		return d
	}
	return DefaultExternalTimeout
}

// envNamePattern is what spec.external.env accepts as a variable name.
const envNamePattern = "^[A-Za-z_][A-Za-z0-9_]*$"

func (c *checker) external(e *ExternalIssuer) {
	const path = "spec.external"
	if len(e.Command) == 0 {
		c.errorf(path+".command", "required: the command's argv, its first element an absolute path")
	} else {
		c.absPath(path+".command[0]", e.Command[0])
		for i, a := range e.Command {
			if strings.ContainsRune(a, 0) {
				c.errorf(fmt.Sprintf("%s.command[%d]", path, i), "must not contain a NUL byte")
			}
		}
	}
	if e.Timeout != "" {
		if d, msg := parsePositiveDuration(e.Timeout); msg != "" {
			c.errorf(path+".timeout", "%q %s", e.Timeout, msg)
		} else if d > MaxExternalTimeout {
			c.errorf(path+".timeout", "%q is longer than the limit of %s", e.Timeout, MaxExternalTimeout)
		}
	}
	for _, k := range sortedKeys(e.Env) {
		kpath := fmt.Sprintf("%s.env[%q]", path, k)
		switch {
		case !isEnvName(k):
			c.errorf(kpath, "%q is not a valid environment variable name (letters, digits and '_', not starting with a digit)", k)
		case strings.HasPrefix(strings.ToUpper(k), ExternalEnvPrefix):
			c.errorf(kpath, "%q is reserved: certops sets the %s variables itself", k, ExternalEnvPrefix)
		case strings.ContainsRune(e.Env[k], 0):
			c.errorf(kpath, "the value must not contain a NUL byte")
		}
	}
	c.requiredAbsPath(path+".caBundleFile", e.CABundleFile)
}

// externalConstraints are the JSON Schema keywords of ExternalIssuer's
// fields beyond their types (see fieldConstraints).
func externalConstraints(field string) map[string]any {
	switch field {
	case "command":
		return map[string]any{"minItems": 1, "prefixItems": []any{map[string]any{"type": "string", "pattern": "^/"}}}
	case "timeout":
		return map[string]any{"pattern": durationPattern}
	case "env":
		return map[string]any{"propertyNames": map[string]any{"pattern": envNamePattern, "not": map[string]any{"pattern": "^[Cc][Ee][Rr][Tt][Oo][Pp][Ss]_"}}}
	case "caBundleFile":
		return map[string]any{"pattern": "^/"}
	}
	return nil
}

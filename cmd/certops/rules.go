package main

import (
	"errors"
	"fmt"

	"github.com/certops/certops/alerting"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/spec"
)

// rulesCmd: certops rules [DIR] [--format rules|prometheusrule] — print the
// Prometheus rules. DIR is validated (the command fails on an invalid
// repository) but does not change the rules: the thresholds of its
// AlertPolicy reach Prometheus as gauges exported by the reconciler.
func rulesCmd(env cliEnv, args []string) int {
	fs := newFlagSet(env, "rules")
	var format, name, namespace, runbooks string
	fs.StringVar(&format, "format", "rules", "output: rules (a Prometheus rule file) or prometheusrule (a monitoring.coreos.com/v1 PrometheusRule)")
	fs.StringVar(&name, "name", "certops", "metadata.name of the PrometheusRule")
	fs.StringVar(&namespace, "namespace", "", "metadata.namespace of the PrometheusRule (omitted when empty)")
	fs.StringVar(&runbooks, "runbook-base-url", alerting.DefaultRunbookBaseURL, "base URL of the runbooks linked from each alert")
	fs.Usage = func() {
		fmt.Fprint(env.stderr, `usage: certops rules [DIR] [--format rules|prometheusrule] [--name N] [--namespace NS]

Prints certops' Prometheus alerting rules. DIR (default ".") is the config
repository; it is validated, so the command fails on an invalid repository.
The output is the same for every AlertPolicy: the rules compare against the
certops_alert_threshold_* gauges that the reconciler exports from the
AlertPolicy in Git, so changing a threshold needs a git push, not new rules.

flags:
`)
		fs.PrintDefaults()
	}
	// DIR may come before or after the flags: certops rules DIR --format F.
	if err := fs.parse(args); err != nil {
		return parseExit(err)
	}
	dir := "."
	if fs.NArg() > 0 {
		dir = fs.Arg(0)
		if err := fs.parse(fs.Args()[1:]); err != nil {
			return parseExit(err)
		}
		if fs.NArg() > 0 {
			fs.Usage()
			return failure.ExitCode(errUsage)
		}
	}
	if _, err := spec.LoadDir(dir); err != nil {
		var errs spec.ErrorList
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(env.stderr, e.Error())
			}
			fmt.Fprintf(env.stderr, "certops: %d error(s) in %s\n", len(errs), dir)
			return 1
		}
		fmt.Fprintln(env.stderr, "certops:", err)
		return 1
	}
	rules := alerting.RulesWithRunbooks(runbooks)
	var out []byte
	var err error
	switch format {
	case "rules":
		out, err = alerting.RenderRuleFile(rules)
	case "prometheusrule":
		out, err = alerting.RenderPrometheusRule(rules, alerting.PrometheusRuleOptions{
			Name: name, Namespace: namespace, Labels: map[string]string{"app.kubernetes.io/name": "certops"}})
	default:
		fmt.Fprintf(env.stderr, "certops: --format %q: want rules or prometheusrule\n", format)
		return failure.ExitCode(errUsage)
	}
	if err != nil {
		fmt.Fprintln(env.stderr, "certops:", err)
		return 1
	}
	if _, err := env.stdout.Write(out); err != nil {
		fmt.Fprintln(env.stderr, "certops:", err)
		return 1
	}
	return 0
}

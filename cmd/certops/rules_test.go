package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/certops/certops/alerting"
)

func TestRulesPrintsRuleFileForValidRepo(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"base.yaml": issuerDoc})
	code, stdout, stderr := cli(context.Background(), nil, "rules", dir)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	var got alerting.RuleGroups
	if err := yaml.UnmarshalStrict([]byte(stdout), &got); err != nil {
		t.Fatalf("output is not a rule file: %v\n%s", err, stdout)
	}
	if diff := len(got.Groups[0].Rules) - len(alerting.Rules().Groups[0].Rules); diff != 0 {
		t.Errorf("got %d rules more than alerting.Rules", diff)
	}
}

func TestRulesPrometheusRuleFormat(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"base.yaml": issuerDoc})
	code, stdout, stderr := cli(context.Background(), nil, "rules", dir,
		"--format", "prometheusrule", "--name", "certops-rules", "--namespace", "certops")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	var got alerting.PrometheusRule
	if err := yaml.UnmarshalStrict([]byte(stdout), &got); err != nil {
		t.Fatalf("output is not a PrometheusRule: %v\n%s", err, stdout)
	}
	if got.Kind != "PrometheusRule" || got.Metadata.Name != "certops-rules" || got.Metadata.Namespace != "certops" {
		t.Errorf("object = %s %s/%s, want PrometheusRule certops/certops-rules", got.Kind, got.Metadata.Namespace, got.Metadata.Name)
	}
}

func TestRulesFailsOnInvalidRepoAndBadFormat(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"policy.yaml": `apiVersion: certops/v1
kind: AlertPolicy
metadata: {name: default}
spec:
  agentOfflineAfter: soon
`})
	code, stdout, stderr := cli(context.Background(), nil, "rules", dir)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "policy.yaml:5:") {
		t.Errorf("invalid repo: exit %d, stdout %q, stderr %q; want 1, nothing, a policy.yaml:5 error", code, stdout, stderr)
	}
	code, _, stderr = cli(context.Background(), nil, "rules", filepath.Join(dir, "missing"))
	if code != 1 {
		t.Errorf("missing dir: exit %d, want 1 (stderr %q)", code, stderr)
	}
	valid := t.TempDir()
	writeFiles(t, valid, map[string]string{"base.yaml": issuerDoc})
	code, _, stderr = cli(context.Background(), nil, "rules", valid, "--format", "json")
	if code != 2 || !strings.Contains(stderr, "--format") {
		t.Errorf("bad format: exit %d, stderr %q; want 2 (bad usage) naming --format", code, stderr)
	}
}

package main

import (
	"context"
	"strings"
	"testing"
)

const channelsDoc = `---
apiVersion: certops/v1
kind: NotificationChannel
metadata: {name: ops-hook}
spec:
  webhook: {url: "https://ops.example.com/hook"}
---
apiVersion: certops/v1
kind: NotificationChannel
metadata: {name: shop-hook}
spec:
  webhook: {url: "https://shop.example.com/hook"}
`

func alertPolicyDoc(routes string) string {
	return `---
apiVersion: certops/v1
kind: AlertPolicy
metadata: {name: default}
spec:
  notify: [ops-hook]
` + routes
}

// TestPlanShowsAlertRouting: a route added in a pull request shows, in the
// plan, where the alerts of the certificates it matches will go.
func TestPlanShowsAlertRouting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"config/base.yaml": issuerDoc + channelsDoc + alertPolicyDoc(""),
		"config/certs.yaml": certDoc("shop", "shop.example.com")})
	gitCLI(t, dir, "init", "-q", "-b", "main")
	gitCLI(t, dir, "add", "-A")
	gitCLI(t, dir, "commit", "-q", "-m", "base")
	gitCLI(t, dir, "checkout", "-q", "-b", "feature")
	writeFiles(t, dir, map[string]string{"config/base.yaml": issuerDoc + channelsDoc +
		alertPolicyDoc("  routes:\n    - match: {team: shop}\n      notify: [shop-hook]\n")})
	gitCLI(t, dir, "commit", "-q", "-am", "route the shop team's alerts")

	code, stdout, stderr := cli(ctx, nil, "plan", "--repo", dir, "--path", "config", "--base", "main", "--head", "HEAD")
	if code != 2 {
		t.Fatalf("plan: exit %d, want 2\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "Alert routing (where the alerts about these objects will go):\n  Certificate/shop: shop-hook (was ops-hook)\n") {
		t.Errorf("text plan lacks the routing of Certificate/shop:\n%s", stdout)
	}
	if strings.Contains(stdout, "Agent/web-01:") {
		t.Errorf("text plan lists Agent/web-01, whose alerts still go to ops-hook:\n%s", stdout)
	}
	code, stdout, _ = cli(ctx, nil, "plan", "--repo", dir, "--path", "config", "--base", "main", "--head", "HEAD", "--format", "markdown")
	if code != 2 || !strings.Contains(stdout, "#### Alert routing") || !strings.Contains(stdout, "Certificate/shop: shop-hook (was ops-hook)\n") {
		t.Errorf("markdown plan (exit %d) lacks the alert routing:\n%s", code, stdout)
	}

	// A route naming a channel that does not exist: the head is refused
	// with FILE:LINE.
	writeFiles(t, dir, map[string]string{"config/base.yaml": issuerDoc + channelsDoc +
		alertPolicyDoc("  routes:\n    - match: {team: shop}\n      notify: [pay-hook]\n")})
	gitCLI(t, dir, "commit", "-q", "-am", "a typo")
	code, _, stderr = cli(ctx, nil, "plan", "--repo", dir, "--path", "config", "--base", "main", "--head", "HEAD")
	if code != 1 || !strings.Contains(stderr, `base.yaml:32: spec.routes[0].notify[0]: NotificationChannel "pay-hook" does not exist`) {
		t.Errorf("plan with a dangling route: exit %d, want 1 with the error at its line\n%s", code, stderr)
	}
}

package assign_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/assign"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

func TestTargeting(t *testing.T) {
	agents := map[string]map[string]string{
		"web-01": {"role": "web", "zone": "a"},
		"web-02": {"role": "web", "zone": "b"},
		"db-01":  {"role": "db", "zone": "a"},
		"bare":   nil,
	}
	ix := assign.NewIndex()
	for name, labels := range agents {
		ix.Add(name, labels)
	}
	sel := func(m map[string]string) *spec.LabelSelector { return &spec.LabelSelector{MatchLabels: m} }
	for _, tt := range []struct {
		name   string
		deploy *spec.Deployment
		want   []string
	}{
		{"no deploy block", nil, nil},
		{"by name", &spec.Deployment{Agents: []string{"web-02", "db-01"}}, []string{"db-01", "web-02"}},
		{"unknown names are skipped", &spec.Deployment{Agents: []string{"web-09", "web-01"}}, []string{"web-01"}},
		{"by one label", &spec.Deployment{AgentSelector: sel(map[string]string{"role": "web"})}, []string{"web-01", "web-02"}},
		{"by every label", &spec.Deployment{AgentSelector: sel(map[string]string{"role": "web", "zone": "a"})}, []string{"web-01"}},
		{"a label nobody has", &spec.Deployment{AgentSelector: sel(map[string]string{"role": "cache"})}, nil},
		{"empty matchLabels select nothing", &spec.Deployment{AgentSelector: sel(map[string]string{})}, nil},
		{"names and selector, no duplicates", &spec.Deployment{Agents: []string{"web-01", "bare"},
			AgentSelector: sel(map[string]string{"zone": "a"})}, []string{"bare", "db-01", "web-01"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := ix.Targets(tt.deploy)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Targets (-want +got):\n%s", diff)
			}
			// The index and the one rule agree for every agent.
			for name, labels := range agents {
				in := false
				for _, g := range got {
					in = in || g == name
				}
				if s := tt.deploy.Selects(name, labels); s != in {
					t.Errorf("Selects(%s) = %v, but Targets says %v", name, s, in)
				}
			}
		})
	}
}

func TestSpecHash(t *testing.T) {
	base := func() *spec.CertificateSpec {
		return &spec.CertificateSpec{IssuerRef: "ca", CommonName: "shop.example.com", DNSNames: []string{"shop.example.com"},
			Duration: "2160h", Deploy: &spec.Deployment{Agents: []string{"web-01"}, Reload: []string{"true"},
				Files: spec.DeployFiles{Cert: "/etc/ssl/shop/cert.pem", Key: "/etc/ssl/shop/key.pem"}}}
	}
	h := assign.SpecHash(base())
	if len(h) != 32 || assign.SpecHash(base()) != h {
		t.Fatalf("SpecHash = %q; want 32 hex digits, the same for the same spec", h)
	}
	for _, tt := range []struct {
		name    string
		edit    func(c *spec.CertificateSpec)
		changes bool
	}{
		{"another agent", func(c *spec.CertificateSpec) { c.Deploy.Agents = append(c.Deploy.Agents, "web-02") }, false},
		{"a selector", func(c *spec.CertificateSpec) {
			c.Deploy.AgentSelector = &spec.LabelSelector{MatchLabels: map[string]string{"role": "web"}}
		}, false},
		{"a name", func(c *spec.CertificateSpec) { c.DNSNames = append(c.DNSNames, "www.example.com") }, true},
		{"the issuer", func(c *spec.CertificateSpec) { c.IssuerRef = "other" }, true},
		{"a file path", func(c *spec.CertificateSpec) { c.Deploy.Files.Cert = "/etc/ssl/shop/c.pem" }, true},
		{"the reload", func(c *spec.CertificateSpec) { c.Deploy.Reload = []string{"nginx", "-s", "reload"} }, true},
		{"a combined file", func(c *spec.CertificateSpec) { c.Deploy.Files.Combined = "/etc/haproxy/shop.pem" }, true},
		{"a der file", func(c *spec.CertificateSpec) { c.Deploy.Files.DER = "/etc/ssl/shop/cert.der" }, true},
		{"a pkcs12 password file", func(c *spec.CertificateSpec) { c.Deploy.Files.PKCS12PasswordFile = "/etc/certops/p12.pass" }, true},
		{"a jks alias", func(c *spec.CertificateSpec) { c.Deploy.Files.JKSAlias = "shop" }, true},
		{"the duration", func(c *spec.CertificateSpec) { c.Duration = "720h" }, true},
		{"a reissue value", func(c *spec.CertificateSpec) { c.Reissue = "2026-12-05 key compromise" }, true},
		{"suspend", func(c *spec.CertificateSpec) { c.Suspend = true }, false},
	} {
		c := base()
		tt.edit(c)
		if got := assign.SpecHash(c) != h; got != tt.changes {
			t.Errorf("%s: hash changed = %v, want %v", tt.name, got, tt.changes)
		}
	}
}

func TestRenewalTime(t *testing.T) {
	notBefore := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter := notBefore.Add(90 * 24 * time.Hour)
	for _, tt := range []struct {
		name string
		spec spec.CertificateSpec
		want time.Time // without jitter
	}{
		{"default: two thirds of the lifetime", spec.CertificateSpec{Duration: "2160h"}, notBefore.Add(60 * 24 * time.Hour)},
		{"renewBefore", spec.CertificateSpec{Duration: "2160h", RenewBefore: "720h"}, notAfter.Add(-720 * time.Hour)},
		{"renewBeforePercentage", spec.CertificateSpec{Duration: "2160h", RenewBeforePercentage: ptr(10)}, notAfter.Add(-9 * 24 * time.Hour)},
	} {
		if got := assign.RenewalTime(&tt.spec, "shop", "web-01", notBefore, notAfter, 0); !got.Equal(tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRenewalJitterSpread(t *testing.T) {
	notBefore := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter := notBefore.Add(90 * 24 * time.Hour)
	c := &spec.CertificateSpec{Duration: "2160h"} // default: renew at 2/3
	base := c.RenewalTime(notBefore, notAfter)
	renewBefore := notAfter.Sub(base)
	const n, buckets = 2000, 10
	counts := make([]int, buckets)
	for i := range n {
		at := assign.RenewalTime(c, "shop", fmt.Sprintf("web-%04d", i), notBefore, notAfter, 0.1)
		early := base.Sub(at)
		if early < 0 || early >= renewBefore/10 {
			t.Fatalf("renewal %v is %v before the base time; want within [0, %v)", at, early, renewBefore/10)
		}
		if again := assign.RenewalTime(c, "shop", fmt.Sprintf("web-%04d", i), notBefore, notAfter, 0.1); !again.Equal(at) {
			t.Fatal("renewal time is not deterministic")
		}
		counts[int(early*buckets/(renewBefore/10))]++
	}
	for i, got := range counts {
		if got < n/buckets/2 || got > n/buckets*3/2 {
			t.Errorf("bucket %d holds %d of %d renewals; want about %d (spread %v)", i, got, n, n/buckets, counts)
		}
	}
}

func TestAssess(t *testing.T) {
	now := time.Date(2030, 1, 10, 0, 0, 0, 0, time.UTC)
	const hash, old = "current-spec", "older-spec"
	version := func(serial, specHash string) *state.CertificateVersion {
		return &state.CertificateVersion{Serial: serial, SpecHash: specHash, NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(89 * 24 * time.Hour)}
	}
	installed := func(serial, specHash string, notAfter time.Time) *state.Deployment {
		return &state.Deployment{SpecHash: specHash, Current: version(serial, specHash), RenewAt: now.Add(50 * 24 * time.Hour),
			InstalledSerial: serial, InstalledSpecHash: specHash, InstalledNotAfter: notAfter, State: state.DeploymentInstalled, StateSpecHash: specHash}
	}
	good := installed("01", hash, now.Add(89*24*time.Hour))
	for _, tt := range []struct {
		name       string
		targets    []string
		deps       map[string]*state.Deployment
		ready      bool
		reason     string
		expiration time.Time
	}{
		{"no agents", nil, nil, false, "no agent deploys it: deploy names or selects no existing agent", time.Time{}},
		{"nothing asked yet", []string{"a"}, nil, false, "waiting for agent a to request issuance", time.Time{}},
		{"installed everywhere", []string{"a", "b"}, map[string]*state.Deployment{"a": good, "b": good},
			true, "installed on 2 agent(s)", good.InstalledNotAfter},
		{"issue failed", []string{"a"}, map[string]*state.Deployment{"a": {SpecHash: hash, State: state.DeploymentIssueFailed, StateSpecHash: hash, LastError: "name not allowed"}},
			false, "issuance for agent a failed: name not allowed", time.Time{}},
		{"rolled back", []string{"a"}, map[string]*state.Deployment{"a": {SpecHash: hash, Current: version("02", hash),
			State: state.DeploymentRolledBack, StateSpecHash: hash, LastError: "reload: exit 1"}},
			false, "deployment on agent a rolled-back: reload: exit 1", time.Time{}},
		{"issued, not installed", []string{"a"}, map[string]*state.Deployment{"a": {SpecHash: hash, Current: version("03", hash), State: state.DeploymentIssued, StateSpecHash: hash}},
			false, "waiting for agent a to install serial 03", time.Time{}},
		{"expired", []string{"a"}, map[string]*state.Deployment{"a": installed("04", hash, now.Add(-time.Hour))},
			false, "certificate on agent a expired at 2030-01-09T23:00:00Z", now.Add(-time.Hour)},
		{"spec changed", []string{"a"}, map[string]*state.Deployment{"a": installed("05", old, now.Add(24*time.Hour))},
			false, "spec changed; waiting for agent a to request a new certificate", now.Add(24 * time.Hour)},
		// A failure recorded for another spec (a commit since reverted) does not define the state.
		{"expired, failure of a reverted spec", []string{"a"}, map[string]*state.Deployment{"a": failedFor(old, installed("06", hash, now.Add(-time.Hour)))},
			false, "certificate on agent a expired at 2030-01-09T23:00:00Z", now.Add(-time.Hour)},
		{"issued, failure of an older spec", []string{"a"}, map[string]*state.Deployment{"a": failedFor(old, &state.Deployment{SpecHash: hash, Current: version("07", hash)})},
			false, "waiting for agent a to install serial 07", time.Time{}},
		{"installed, failure of a reverted spec", []string{"a"}, map[string]*state.Deployment{"a": failedFor(old, installed("08", hash, now.Add(time.Hour)))},
			true, "installed on 1 agent(s)", now.Add(time.Hour)},
		{"one of two not ready", []string{"a", "b", "c"}, map[string]*state.Deployment{"a": good},
			false, "waiting for agent b to request issuance (and 1 more agent(s) not ready)", good.InstalledNotAfter},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := assign.Assess(hash, tt.targets, func(agent string) *state.Deployment { return tt.deps[agent] }, now)
			if r.Ready != tt.ready || r.Reason != tt.reason || !r.Expiration.Equal(tt.expiration) {
				t.Errorf("got ready=%v reason=%q expiration=%v; want %v %q %v", r.Ready, r.Reason, r.Expiration, tt.ready, tt.reason, tt.expiration)
			}
		})
	}
}

// failedFor is d after a failed report for spec: d's files unchanged.
func failedFor(spec string, d *state.Deployment) *state.Deployment {
	d.SpecHash, d.State, d.StateSpecHash, d.LastError, d.Failures = spec, state.DeploymentFailed, spec, "issue: old error", 3
	return d
}

// The state of a deployment for the current spec: the recorded one when it
// was recorded for that spec, else what the deployment has of it.
func TestCurrentState(t *testing.T) {
	const hash, old = "current-spec", "older-spec"
	for _, tt := range []struct {
		name    string
		d       *state.Deployment
		want    state.DeploymentState
		wantErr string
	}{
		{"no deployment", nil, state.DeploymentPending, ""},
		{"recorded for this spec", &state.Deployment{State: state.DeploymentIssueFailed, StateSpecHash: hash, LastError: "refused"},
			state.DeploymentIssueFailed, "refused"},
		{"failed for a reverted spec, this one installed", failedFor(old, &state.Deployment{InstalledSerial: "01", InstalledSpecHash: hash,
			Current: &state.CertificateVersion{Serial: "01", SpecHash: hash}}), state.DeploymentInstalled, ""},
		{"failed for an older spec, this one issued", failedFor(old, &state.Deployment{Current: &state.CertificateVersion{Serial: "02", SpecHash: hash}}),
			state.DeploymentIssued, ""},
		{"failed for an older spec, nothing of this one", failedFor(old, &state.Deployment{InstalledSerial: "03", InstalledSpecHash: old}),
			state.DeploymentPending, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, gotErr := assign.CurrentState(hash, tt.d)
			if got != tt.want || gotErr != tt.wantErr {
				t.Errorf("CurrentState = %s, %q; want %s, %q", got, gotErr, tt.want, tt.wantErr)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestRenewalInWindow(t *testing.T) {
	start := time.Date(2030, 3, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(48 * time.Hour)
	at := assign.RenewalInWindow(start, end, "shop", "web-01", start.Add(-time.Hour))
	if at.Before(start) || !at.Before(end) {
		t.Fatalf("renewal %v outside the window [%v, %v)", at, start, end)
	}
	if again := assign.RenewalInWindow(start, end, "shop", "web-01", start.Add(-time.Hour)); !again.Equal(at) {
		t.Errorf("not deterministic: %v, then %v", at, again)
	}
	late := end.Add(time.Hour)
	if got := assign.RenewalInWindow(start, end, "shop", "web-01", late); !got.Equal(late) {
		t.Errorf("after the point has passed: got %v, want now (%v)", got, late)
	}
}

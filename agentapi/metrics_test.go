package agentapi_test

import (
	"bytes"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/testkit"
)

// install issues cert for agent and reports it installed; it returns what
// was issued and the assignment it was issued for.
func (e *env) install(agent, cert string) (agentproto.Issued, agentproto.Assignment) {
	e.t.Helper()
	var issued agentproto.Issued
	e.issue(agent, cert).decode(e.t, &issued)
	a := e.assignment(agent, cert)
	if r := e.do("POST", agentproto.PathReports, tokenOf(agent), agentproto.Report{Certificate: cert, SpecHash: a.SpecHash,
		Serial: issued.Serial, Result: agentproto.ResultInstalled}); r.status != http.StatusNoContent {
		e.t.Fatalf("report: %d %s", r.status, r.body)
	}
	return issued, a
}

// The /metrics page, registry families and per-certificate text joined,
// parses with expfmt's text parser and passes `promtool check metrics`;
// every family has one HELP and one TYPE line; the per-certificate values
// are those of the deployments.
func TestMetricsPageParsesWithOneHeaderPerFamily(t *testing.T) {
	e := newEnv(t, envOptions{perCertificate: true}, fleetObjs()...)
	issued, a := e.install("db-01", "db")
	page := e.scrape()
	mfs := parseMetrics(t, page)

	helps := regexp.MustCompile(`(?m)^# HELP (\S+) `).FindAllSubmatch(page, -1)
	types := regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllSubmatch(page, -1)
	for _, lines := range [][][][]byte{helps, types} {
		seen := map[string]int{}
		for _, m := range lines {
			seen[string(m[1])]++
		}
		for name := range mfs {
			if seen[name] != 1 {
				t.Errorf("%s: %d %s lines, want 1", name, seen[name], lines[0][0][:6])
			}
		}
	}

	for _, c := range []struct {
		name, cert string
		want       float64
	}{
		{"certops_certificate_ready", "db", 1},
		{"certops_certificate_ready", "shop", 0},
		{"certops_certificate_ready", "pool", 0},
		{"certops_certificate_expiration_timestamp_seconds", "db", float64(issued.NotAfter.Unix())},
		{"certops_certificate_not_before_timestamp_seconds", "db", float64(issued.NotBefore.Unix())},
		{"certops_certificate_renewal_timestamp_seconds", "db", float64(a.RenewAt.UnixNano()) / 1e9},
	} {
		if got, ok := seriesValue(mfs, c.name, map[string]string{"certificate": c.cert}); !ok || got != c.want {
			t.Errorf("%s{certificate=%q} = %v (exported %v), want %v", c.name, c.cert, got, ok, c.want)
		}
	}
	for _, name := range []string{"certops_certificate_expiration_timestamp_seconds", "certops_certificate_renewal_timestamp_seconds"} {
		if n := len(mfs[name].GetMetric()); n != 1 {
			t.Errorf("%s: %d series, want 1 (only db has a certificate)", name, n)
		}
	}
	if got, _ := seriesValue(mfs, "certops_certificates", map[string]string{"state": "ready"}); got != 1 {
		t.Errorf("certops_certificates{state=ready} = %v, want 1", got)
	}

	if out, err := testkit.GoTool(t, bytes.NewReader(page), "promtool", "check", "metrics"); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n%s", err, out, page)
	}
}

// certops_certificate_ready goes to 0 when the installed certificate
// expires, with no change to the snapshot: the cached text expires then.
func TestMetricsReadyTurnsZeroAtExpiry(t *testing.T) {
	e := newEnv(t, envOptions{perCertificate: true}, fleetObjs()...)
	issued, _ := e.install("db-01", "db")
	ready := func() (float64, float64) {
		t.Helper()
		mfs := parseMetrics(t, e.scrape())
		perCert, _ := seriesValue(mfs, "certops_certificate_ready", map[string]string{"certificate": "db"})
		total, _ := seriesValue(mfs, "certops_certificates", map[string]string{"state": "ready"})
		return perCert, total
	}
	if r, n := ready(); r != 1 || n != 1 {
		t.Fatalf("installed: ready %v, certificates ready %v; want 1, 1", r, n)
	}
	e.clock.Advance(issued.NotAfter.Sub(e.clock.Now()) - time.Second)
	if r, n := ready(); r != 1 || n != 1 {
		t.Fatalf("a second before expiry: ready %v, certificates ready %v; want 1, 1", r, n)
	}
	e.clock.Advance(time.Second)
	if r, n := ready(); r != 0 || n != 0 {
		t.Fatalf("at expiry: ready %v, certificates ready %v; want 0, 0", r, n)
	}
}

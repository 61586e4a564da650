package agentapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

const (
	shopAddr = "127.0.0.1:8443"
	dbAddr   = "10.0.0.5:5432"
)

// servedFleet is fleetObjs with verify addresses on shop (web-01) and db
// (db-01); pool has none.
func servedFleet() []*spec.Object {
	objs := fleetObjs()
	for _, o := range objs {
		c, ok := o.Spec.(*spec.CertificateSpec)
		if !ok {
			continue
		}
		switch o.Name {
		case "shop":
			c.Deploy.Verify = &spec.Verify{Address: shopAddr, ServerName: "shop.example.com"}
		case "db":
			c.Deploy.Verify = &spec.Verify{Address: dbAddr}
		}
	}
	return objs
}

// installed issues cert to agent and reports it installed; it returns the
// issued certificate.
func (e *env) installed(agent, cert string) agentproto.Issued {
	e.t.Helper()
	r := e.issue(agent, cert)
	if r.status != http.StatusOK {
		e.t.Fatalf("issue %s for %s: %d %s", cert, agent, r.status, r.body)
	}
	var iss agentproto.Issued
	r.decode(e.t, &iss)
	a := e.assignment(agent, cert)
	rep := agentproto.Report{Certificate: cert, SpecHash: a.SpecHash, Serial: iss.Serial, Result: agentproto.ResultInstalled}
	if r := e.do("POST", agentproto.PathReports, tokenOf(agent), rep); r.status != http.StatusNoContent {
		e.t.Fatalf("report: %d %s", r.status, r.body)
	}
	return iss
}

// servedOf is the Served block of cert on agent.
func (e *env) servedOf(agent, cert string) *state.Served {
	e.t.Helper()
	deps, err := e.st.CertificateDeployments(context.Background(), cert)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, d := range deps {
		if d.Agent == agent {
			return d.Served
		}
	}
	e.t.Fatalf("no deployment %s@%s", cert, agent)
	return nil
}

// TestServedChecksAreRecorded: a check serving the installed serial
// matches; one serving an older serial starts the mismatch; a failed check
// keeps the served leaf and records its error.
func TestServedChecksAreRecorded(t *testing.T) {
	e := newEnv(t, envOptions{}, servedFleet()...)
	first := e.installed("web-01", "shop")
	e.clock.Advance(time.Minute)
	second := e.installed("web-01", "shop")
	post := func(c agentproto.ServedCheck) {
		t.Helper()
		c.Certificate, c.Address = "shop", shopAddr
		if r := e.do("POST", agentproto.PathServed, tokenOf("web-01"), agentproto.ServedReport{Checks: []agentproto.ServedCheck{c}}); r.status != http.StatusNoContent {
			t.Fatalf("served report: %d %s", r.status, r.body)
		}
	}
	at := e.clock.Now().Add(-time.Second)
	// Upper case and a leading zero are the same serial as the issued one.
	post(agentproto.ServedCheck{Serial: "0" + strings.ToUpper(first.Serial), NotBefore: first.NotBefore, NotAfter: first.NotAfter, CheckedAt: at})
	want := &state.Served{Serial: first.Serial, NotBefore: first.NotBefore, NotAfter: first.NotAfter, CheckedAt: at, MismatchSince: at}
	if diff := cmp.Diff(want, e.servedOf("web-01", "shop")); diff != "" {
		t.Errorf("after serving the old serial (-want +got):\n%s", diff)
	}
	e.clock.Advance(time.Minute)
	post(agentproto.ServedCheck{Error: "dial tcp 127.0.0.1:8443: connect: connection refused"})
	want.CheckedAt, want.Error = e.clock.Now(), "dial tcp 127.0.0.1:8443: connect: connection refused"
	if diff := cmp.Diff(want, e.servedOf("web-01", "shop")); diff != "" {
		t.Errorf("after a failed check (-want +got):\n%s", diff)
	}
	e.clock.Advance(time.Minute)
	post(agentproto.ServedCheck{Serial: second.Serial, NotBefore: second.NotBefore, NotAfter: second.NotAfter})
	want = &state.Served{Serial: second.Serial, NotBefore: second.NotBefore, NotAfter: second.NotAfter, CheckedAt: e.clock.Now()}
	if diff := cmp.Diff(want, e.servedOf("web-01", "shop")); diff != "" {
		t.Errorf("after serving the installed serial (-want +got):\n%s", diff)
	}
}

// TestBadServedReportsChangeNothing: every malformed or foreign served
// report gets a clear error with its code, nothing is recorded (not even
// the good checks of the same report), and another agent's report is
// recorded as usual.
func TestBadServedReportsChangeNothing(t *testing.T) {
	e := newEnv(t, envOptions{}, servedFleet()...)
	iss := e.installed("web-01", "shop")
	e.installed("db-01", "db")
	now := e.clock.Now()
	good := agentproto.ServedCheck{Certificate: "shop", Address: shopAddr, Serial: iss.Serial, NotBefore: iss.NotBefore,
		NotAfter: iss.NotAfter, CheckedAt: now}
	with := func(mod func(*agentproto.ServedCheck)) agentproto.ServedReport {
		c := good
		mod(&c)
		return agentproto.ServedReport{Checks: []agentproto.ServedCheck{c}}
	}
	many := agentproto.ServedReport{}
	for range agentproto.MaxServedChecks + 1 {
		many.Checks = append(many.Checks, good)
	}
	cases := []struct {
		name   string
		body   any
		status int
		code   agentproto.Code
		msg    string
	}{
		{"not JSON", []byte(`{"checks": [`), 400, agentproto.CodeInvalid, "malformed JSON"},
		{"empty", agentproto.ServedReport{}, 400, agentproto.CodeInvalid, "checks is empty"},
		{"too many", many, 400, agentproto.CodeInvalid, "at most 500"},
		{"no certificate", with(func(c *agentproto.ServedCheck) { c.Certificate = "" }), 400, agentproto.CodeInvalid, "checks[0]: certificate is required"},
		{"another agent's certificate", with(func(c *agentproto.ServedCheck) { c.Certificate, c.Address = "db", dbAddr }), 404, agentproto.CodeNotFound, `"db" is not assigned to this agent`},
		{"unknown certificate", with(func(c *agentproto.ServedCheck) { c.Certificate = "nope" }), 404, agentproto.CodeNotFound, `"nope" is not assigned`},
		{"no verify address", with(func(c *agentproto.ServedCheck) { c.Certificate = "pool" }), 400, agentproto.CodeInvalid, "has no deploy.verify address"},
		{"another address", with(func(c *agentproto.ServedCheck) { c.Address = "10.9.9.9:443" }), 400, agentproto.CodeInvalid, "is not the deploy.verify address"},
		{"serial and error", with(func(c *agentproto.ServedCheck) { c.Error = "refused" }), 400, agentproto.CodeInvalid, "either an error or a serial"},
		{"neither serial nor error", with(func(c *agentproto.ServedCheck) { c.Serial = "" }), 400, agentproto.CodeInvalid, "needs the served serial or the error"},
		{"serial not hex", with(func(c *agentproto.ServedCheck) { c.Serial = "xyz" }), 400, agentproto.CodeInvalid, `serial "xyz" is not a hexadecimal`},
		{"serial negative", with(func(c *agentproto.ServedCheck) { c.Serial = "-1f" }), 400, agentproto.CodeInvalid, "is not a hexadecimal"},
		{"serial too long", with(func(c *agentproto.ServedCheck) { c.Serial = strings.Repeat("f", 81) }), 400, agentproto.CodeInvalid, "at most 80 digits"},
		{"no notAfter", with(func(c *agentproto.ServedCheck) { c.NotAfter = time.Time{} }), 400, agentproto.CodeInvalid, "needs notBefore and notAfter"},
		{"notBefore after notAfter", with(func(c *agentproto.ServedCheck) { c.NotBefore = c.NotAfter.Add(time.Hour) }), 400, agentproto.CodeInvalid, "is after notAfter"},
		{"checkedAt ahead", with(func(c *agentproto.ServedCheck) { c.CheckedAt = now.Add(time.Hour) }), 400, agentproto.CodeInvalid, "checkedAt " + now.Add(time.Hour).Format(time.RFC3339) + " is more than 5m0s ahead"},
		{"checkedAt ancient", with(func(c *agentproto.ServedCheck) { c.CheckedAt = time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC) }), 400, agentproto.CodeInvalid, "is before 2000-01-01"},
		{"error with NUL", with(func(c *agentproto.ServedCheck) {
			c.Serial, c.NotBefore, c.NotAfter, c.Error = "", time.Time{}, time.Time{}, "tls: \x00"
		}), 400, agentproto.CodeInvalid, "checks[0].error"},
		{"error too long", with(func(c *agentproto.ServedCheck) {
			c.Serial, c.NotBefore, c.NotAfter, c.Error = "", time.Time{}, time.Time{}, strings.Repeat("e", agentproto.MaxTextBytes+1)
		}), 400, agentproto.CodeInvalid, "checks[0].error"},
		{"address raw NUL", []byte(`{"checks": [{"certificate": "shop", "address": "127.0.0.1:\u0000", "error": "x"}]}`), 400, agentproto.CodeInvalid, "checks[0].address"},
		{"a good check, then the same certificate again", agentproto.ServedReport{Checks: []agentproto.ServedCheck{good, good}}, 400, agentproto.CodeInvalid, `checks[1]: certificate "shop" is checked twice`},
		{"a good check, then a bad one", agentproto.ServedReport{Checks: []agentproto.ServedCheck{good, with(func(c *agentproto.ServedCheck) {
			c.Certificate = "db"
		}).Checks[0]}}, 404, agentproto.CodeNotFound, "checks[1]"},
	}
	for _, tc := range cases {
		r := e.do("POST", agentproto.PathServed, tokenOf("web-01"), tc.body)
		if r.status != tc.status {
			t.Errorf("%s: got %d %s, want %d", tc.name, r.status, r.body, tc.status)
			continue
		}
		if b := r.errorBody(t); b.Error.Code != tc.code || !strings.Contains(b.Error.Message, tc.msg) {
			t.Errorf("%s: error %+v, want code %s with %q", tc.name, b.Error, tc.code, tc.msg)
		}
	}
	if r := e.do("GET", agentproto.PathServed, tokenOf("web-01"), nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET served: %d, want 405", r.status)
	}
	if r := e.do("POST", agentproto.PathServed, "", agentproto.ServedReport{Checks: []agentproto.ServedCheck{good}}); r.status != http.StatusUnauthorized {
		t.Errorf("served report without a token: %d, want 401", r.status)
	}
	if got := e.servedOf("web-01", "shop"); got != nil {
		t.Errorf("bad reports recorded %+v", got)
	}
	if got := e.servedOf("db-01", "db"); got != nil {
		t.Errorf("web-01's reports recorded on db-01's deployment: %+v", got)
	}
	// Another agent is not affected.
	dbIss := e.assignment("db-01", "db").Current
	ok := agentproto.ServedReport{Checks: []agentproto.ServedCheck{{Certificate: "db", Address: dbAddr, Serial: dbIss.Serial,
		NotBefore: dbIss.NotBefore, NotAfter: dbIss.NotAfter, CheckedAt: now}}}
	if r := e.do("POST", agentproto.PathServed, tokenOf("db-01"), ok); r.status != http.StatusNoContent {
		t.Fatalf("db-01's served report: %d %s", r.status, r.body)
	}
	if got := e.servedOf("db-01", "db"); got == nil || got.Serial != dbIss.Serial || !got.MismatchSince.IsZero() {
		t.Errorf("db-01's served = %+v", got)
	}
}

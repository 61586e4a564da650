package spec

import (
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

func TestChannelsFor(t *testing.T) {
	policy := &AlertPolicySpec{
		Notify: []string{"ops"},
		Routes: []AlertRoute{
			{Match: map[string]string{"team": "shop"}, Notify: []string{"shop-slack", "shop-mail"}},
			{Match: map[string]string{"env": "prod", "tier": "edge"}, Notify: []string{"pager", "shop-slack"}},
			{Match: map[string]string{"team": "pay"}, Notify: []string{"pay-slack"}},
		},
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   []string
	}{
		{"one route", map[string]string{"team": "pay"}, []string{"pay-slack"}},
		{"every matching route, in route order, without repeats",
			map[string]string{"team": "shop", "env": "prod", "tier": "edge"}, []string{"shop-slack", "shop-mail", "pager"}},
		{"all match labels must match", map[string]string{"env": "prod"}, []string{"ops"}},
		{"value must be equal", map[string]string{"team": "Shop"}, []string{"ops"}},
		{"no route matches: the default", map[string]string{"team": "infra"}, []string{"ops"}},
		{"no labels (certops itself): the default", nil, []string{"ops"}},
	} {
		if diff := cmp.Diff(policy.ChannelsFor(tc.labels), tc.want); diff != "" {
			t.Errorf("%s: ChannelsFor(%v) (-got +want):\n%s", tc.name, tc.labels, diff)
		}
	}
	if got := (*AlertPolicySpec)(nil).ChannelsFor(map[string]string{"team": "shop"}); got != nil {
		t.Errorf("nil policy: ChannelsFor = %v, want nothing", got)
	}
	if got := (&AlertPolicySpec{Routes: policy.Routes}).ChannelsFor(nil); len(got) != 0 {
		t.Errorf("no default: ChannelsFor(nil) = %v, want nothing", got)
	}
	if diff := cmp.Diff(policy.AllChannels(), []string{"ops", "shop-slack", "shop-mail", "pager", "pay-slack"}); diff != "" {
		t.Errorf("AllChannels (-got +want):\n%s", diff)
	}
}

func TestSMTPTLSMode(t *testing.T) {
	f, tr := false, true
	for _, tc := range []struct {
		c    SMTPChannel
		want string
	}{
		{SMTPChannel{Port: 465}, SMTPTLSImplicit},
		{SMTPChannel{Port: 587}, SMTPTLSStartTLS},
		{SMTPChannel{Port: 25, StartTLS: &tr}, SMTPTLSStartTLS},
		{SMTPChannel{Port: 25, StartTLS: &f}, SMTPTLSNone},
		{SMTPChannel{Port: 2465, TLS: SMTPTLSImplicit}, SMTPTLSImplicit},
		{SMTPChannel{Port: 465, TLS: SMTPTLSStartTLS}, SMTPTLSStartTLS},
	} {
		if got := tc.c.TLSMode(); got != tc.want {
			t.Errorf("TLSMode of %+v = %s, want %s", tc.c, got, tc.want)
		}
	}
}

func TestRoutesAndSMTPValidation(t *testing.T) {
	files := fstest.MapFS{"alerts.yaml": {Data: []byte(`apiVersion: certops/v1
kind: NotificationChannel
metadata: {name: ops}
spec:
  smtp:
    host: smtp.example.com
    port: 465
    from: certops@example.com
    to: [ops@example.com]
    tls: smtps
    startTLS: false
    auth: CRAM-MD5
---
apiVersion: certops/v1
kind: NotificationChannel
metadata: {name: relay}
spec:
  smtp:
    host: smtp.example.com
    port: 25
    from: certops@example.com
    to: [ops@example.com]
    tls: implicit
    startTLS: false
    auth: LOGIN
---
apiVersion: certops/v1
kind: AlertPolicy
metadata: {name: default}
spec:
  notify: [ops]
  routes:
    - match: {team: shop}
      notify: [ops, shop-slack]
    - match: {}
      notify: [ops]
    - match: {"bad key!": x, team: "no spaces"}
      notify: []
    - match: {team: pay}
      notify: [ops, ops]
`)}}
	_, err := Load(files)
	want := []string{
		`alerts.yaml:10: spec.smtp.tls: "smtps" is not one of implicit, starttls`,
		`alerts.yaml:12: spec.smtp.auth: "CRAM-MD5" is not one of PLAIN, LOGIN`,
		`alerts.yaml:24: spec.smtp.startTLS: does not apply with tls: implicit (TLS from the first byte); drop startTLS`,
		`alerts.yaml:25: spec.smtp.auth: is set but username is not: nothing to authenticate with`,
		`alerts.yaml:34: spec.routes[0].notify[1]: NotificationChannel "shop-slack" does not exist`,
		`alerts.yaml:35: spec.routes[1].match: at least one label to match is required`,
		`alerts.yaml:37: spec.routes[2].match["bad key!"]: "bad key!" is not a valid key (an optional DNS-subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)`,
		`alerts.yaml:37: spec.routes[2].match["team"]: "no spaces" is not a valid label value (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)`,
		`alerts.yaml:38: spec.routes[2].notify: at least one NotificationChannel is required`,
		`alerts.yaml:40: spec.routes[3].notify[1]: duplicate of spec.routes[3].notify[0]`,
	}
	var errs ErrorList
	if err != nil {
		errs = err.(ErrorList)
	}
	if diff := cmp.Diff(errorStrings(t, errs), want); diff != "" {
		t.Errorf("Load errors (-got +want):\n%s", diff)
	}
}

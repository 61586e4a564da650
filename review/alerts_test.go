package review

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/certops/certops/spec"
)

func routedPolicy(routes ...spec.AlertRoute) *spec.Object {
	return &spec.Object{Kind: spec.KindAlertPolicy, Name: "default",
		Spec: &spec.AlertPolicySpec{Notify: []string{"ops"}, Routes: routes}}
}

func labelled(kind spec.Kind, name string, labels map[string]string) *spec.Object {
	o := &spec.Object{Kind: kind, Name: name, Labels: labels}
	if kind == spec.KindAgent {
		o.Spec = &spec.AgentSpec{}
	} else {
		o.Spec = &spec.CertificateSpec{IssuerRef: "ca", CommonName: name + ".example.com"}
	}
	return o
}

func TestAlertRouting(t *testing.T) {
	shopRoute := spec.AlertRoute{Match: map[string]string{"team": "shop"}, Notify: []string{"shop-slack"}}
	payRoute := spec.AlertRoute{Match: map[string]string{"team": "pay"}, Notify: []string{"pay-slack"}}
	base := objects(
		routedPolicy(shopRoute),
		labelled(spec.KindCertificate, "unchanged", map[string]string{"team": "shop"}),
		labelled(spec.KindCertificate, "relabelled", map[string]string{"team": "shop"}),
		labelled(spec.KindCertificate, "pay-api", map[string]string{"team": "pay"}),
		labelled(spec.KindCertificate, "other-label", map[string]string{"team": "shop"}),
	)
	head := objects(
		routedPolicy(shopRoute, payRoute),
		labelled(spec.KindCertificate, "unchanged", map[string]string{"team": "shop"}),
		labelled(spec.KindCertificate, "relabelled", map[string]string{"team": "infra"}),
		labelled(spec.KindCertificate, "pay-api", map[string]string{"team": "pay"}), // routed by the new route
		labelled(spec.KindCertificate, "other-label", map[string]string{"team": "shop", "env": "prod"}),
		labelled(spec.KindCertificate, "new-shop", map[string]string{"team": "shop"}),
		labelled(spec.KindAgent, "web-01", nil),
	)
	r := buildReport(t, "main", "HEAD", base, head)
	want := []AlertRouting{
		{Kind: spec.KindAgent, Name: "web-01", Channels: []string{"ops"}, Default: true},
		{Kind: spec.KindCertificate, Name: "new-shop", Channels: []string{"shop-slack"}},
		{Kind: spec.KindCertificate, Name: "other-label", Channels: []string{"shop-slack"}},
		{Kind: spec.KindCertificate, Name: "pay-api", Channels: []string{"pay-slack"}, Before: []string{"ops"}},
		{Kind: spec.KindCertificate, Name: "relabelled", Channels: []string{"ops"}, Default: true, Before: []string{"shop-slack"}},
	}
	if diff := cmp.Diff(r.AlertRouting, want); diff != "" {
		t.Errorf("AlertRouting (-got +want):\n%s", diff)
	}

	var text bytes.Buffer
	if err := r.Text(&text); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"\nAlert routing (where the alerts about these objects will go):\n",
		"  Agent/web-01: ops (default)\n",
		"  Certificate/pay-api: pay-slack (was ops)\n",
		"  Certificate/relabelled: ops (default) (was shop-slack)\n",
	} {
		if !strings.Contains(text.String(), line) {
			t.Errorf("Text() lacks %q:\n%s", line, text.String())
		}
	}
	md := markdownOf(t, r)
	if !strings.Contains(md, "#### Alert routing") || !strings.Contains(md, "Certificate/new-shop: shop-slack\n") {
		t.Errorf("Markdown() lacks the alert routing:\n%s", md)
	}

	// Without routes at base or head, nothing is listed.
	plain := objects(&spec.Object{Kind: spec.KindAlertPolicy, Name: "default", Spec: &spec.AlertPolicySpec{Notify: []string{"ops"}}},
		labelled(spec.KindCertificate, "new-shop", map[string]string{"team": "shop"}))
	if r := buildReport(t, "main", "HEAD", nil, plain); r.AlertRouting != nil {
		t.Errorf("AlertRouting without routes = %+v, want none", r.AlertRouting)
	}
}

// TestMarkdownBudgetAlertRouting: routing 20,000 new certificates keeps the
// comment within the budget, with a count of the objects left out.
func TestMarkdownBudgetAlertRouting(t *testing.T) {
	head := objects(routedPolicy(spec.AlertRoute{Match: map[string]string{"team": "shop"}, Notify: []string{"shop-slack"}}))
	for i := range 20000 {
		o := labelled(spec.KindCertificate, fmt.Sprintf("cert-%05d", i), map[string]string{"team": "shop"})
		head[o.Key()] = o
	}
	r := buildReport(t, "main", "HEAD", nil, head)
	if len(r.AlertRouting) != 20000 {
		t.Fatalf("AlertRouting has %d entries, want 20000", len(r.AlertRouting))
	}
	md := markdownOf(t, r)
	if len(md) > MaxMarkdownBytes {
		t.Errorf("Markdown() is %d bytes, over the budget of %d", len(md), MaxMarkdownBytes)
	}
	section := md[strings.Index(md, "#### Alert routing"):]
	if !strings.Contains(section, "Certificate/cert-00000: shop-slack\n") || !strings.Contains(section, "more objects\n") {
		t.Errorf("the routing section lacks its first line or its count:\n%.300s", section)
	}
	if len(section) < MaxMarkdownBytes/routingShare-1000 {
		t.Errorf("the routing section has %d bytes, want about its share %d", len(section), MaxMarkdownBytes/routingShare)
	}
}

package review

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/certops/certops/spec"
)

// AlertRouting is where the alerts about one Certificate or Agent go at
// head (spec.AlertPolicySpec.ChannelsFor its labels), listed for the
// objects created, whose labels change, or whose channels change, when the
// AlertPolicy routes by labels at base or head.
type AlertRouting struct {
	Kind spec.Kind `json:"kind"`
	Name string    `json:"name"`
	// Channels are the NotificationChannels at head; empty: nobody.
	Channels []string `json:"channels"`
	// Default is true when no route matches and Channels is spec.notify.
	Default bool `json:"default"`
	// Before are the channels at base, when the object existed and they
	// differ; absent otherwise.
	Before []string `json:"before,omitempty"`
}

// alertRouting lists the routing of the Certificates and Agents at head
// that are new, relabelled or routed elsewhere, in key order; nil when
// neither revision's AlertPolicy has routes.
func alertRouting(base, head map[spec.Key]*spec.Object) []AlertRouting {
	basePolicy, headPolicy := alertPolicy(base), alertPolicy(head)
	if len(basePolicy.Routes) == 0 && len(headPolicy.Routes) == 0 {
		return nil
	}
	var keys []spec.Key
	for k := range head {
		if k.Kind == spec.KindCertificate || k.Kind == spec.KindAgent {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b spec.Key) int {
		switch {
		case spec.KeyLess(a, b):
			return -1
		case spec.KeyLess(b, a):
			return 1
		}
		return 0
	})
	var out []AlertRouting
	for _, k := range keys {
		o := head[k]
		r := AlertRouting{Kind: k.Kind, Name: k.Name, Channels: nonNil(headPolicy.ChannelsFor(o.Labels)),
			Default: !slices.ContainsFunc(headPolicy.Routes, func(rt spec.AlertRoute) bool { return rt.Matches(o.Labels) })}
		if old, ok := base[k]; ok {
			before := basePolicy.ChannelsFor(old.Labels)
			relabelled := !maps.Equal(old.Labels, o.Labels)
			if slices.Equal(before, r.Channels) && !relabelled {
				continue
			}
			if !slices.Equal(before, r.Channels) {
				r.Before = nonNil(before)
			}
		}
		out = append(out, r)
	}
	return out
}

// alertPolicy is the spec of the AlertPolicy among objs; an empty one when
// there is none.
func alertPolicy(objs map[spec.Key]*spec.Object) *spec.AlertPolicySpec {
	for k, o := range objs {
		if k.Kind == spec.KindAlertPolicy {
			if p := o.AlertPolicy(); p != nil {
				return p
			}
		}
	}
	return &spec.AlertPolicySpec{}
}

// line is the routing as one line: "Certificate/shop: shop-slack (was ops)".
func (r AlertRouting) line() string {
	s := string(r.Kind) + "/" + r.Name + ": " + listOrNone(r.Channels)
	if r.Default {
		s += " (default)"
	}
	if r.Before != nil {
		s += " (was " + listOrNone(r.Before) + ")"
	}
	return s
}

const routingHeading = "\n#### Alert routing\n\nWhere the alerts about these objects will go:\n\n"

// routingSection is the "Alert routing" section of the markdown: one line
// per object inside one fence, as many as fit, then a count of the rest.
type routingSection struct {
	lines []string
	fence string
}

func newRoutingSection(rs []AlertRouting) routingSection {
	s := routingSection{lines: make([]string, len(rs))}
	for i, r := range rs {
		s.lines[i] = truncate(r.line(), maxLineBytes) + "\n"
	}
	s.fence = fenceFor(s.lines...)
	return s
}

func (s routingSection) more(n int) string { return fmt.Sprintf("… and %d more objects\n", n) }

// overhead is the heading, the fences and the count line at its longest.
func (s routingSection) overhead() int {
	return len(routingHeading) + 2*(len(s.fence)+1) + len(s.more(len(s.lines)))
}

func (s routingSection) fullSize() int {
	n := s.overhead()
	for _, l := range s.lines {
		n += len(l)
	}
	return n
}

// write writes the section in budget bytes; nothing when not even its
// overhead fits.
func (s routingSection) write(b *bytes.Buffer, budget int) {
	if len(s.lines) == 0 || budget < s.overhead() {
		return
	}
	budget -= s.overhead()
	b.WriteString(routingHeading + s.fence + "\n")
	for i, l := range s.lines {
		if len(l) > budget {
			b.WriteString(s.more(len(s.lines) - i))
			break
		}
		budget -= len(l)
		b.WriteString(l)
	}
	b.WriteString(s.fence + "\n")
}

// textRouting writes the routing for the text format.
func textRouting(b *bytes.Buffer, rs []AlertRouting) {
	if len(rs) == 0 {
		return
	}
	b.WriteString("\nAlert routing (where the alerts about these objects will go):\n")
	for _, r := range rs {
		b.WriteString("  " + strings.TrimSpace(r.line()) + "\n")
	}
}

package spec

import (
	"fmt"
	"slices"
)

// ChannelsFor is the one rule for which NotificationChannels get an alert
// whose subject (a certificate, an agent, or both) carries labels: the
// channels of every route whose match labels are all among labels, in the
// order of the routes and without repeats; when no route matches (and for
// alerts without subject labels, such as those about certops itself), the
// default spec.notify. A nil policy notifies nothing.
func (p *AlertPolicySpec) ChannelsFor(labels map[string]string) []string {
	if p == nil {
		return nil
	}
	var out []string
	matched := false
	for _, r := range p.Routes {
		if !r.Matches(labels) {
			continue
		}
		matched = true
		for _, c := range r.Notify {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	if !matched {
		return slices.Clone(p.Notify)
	}
	return out
}

// Matches reports whether labels carry every match label of the route. A
// route without match labels matches nothing (validation requires one).
func (r AlertRoute) Matches(labels map[string]string) bool {
	if len(r.Match) == 0 {
		return false
	}
	for k, v := range r.Match {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// AllChannels are the channels the policy names anywhere, spec.notify first,
// then the routes', in order and without repeats.
func (p *AlertPolicySpec) AllChannels() []string {
	if p == nil {
		return nil
	}
	out := slices.Clone(p.Notify)
	for _, r := range p.Routes {
		for _, c := range r.Notify {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// SMTP TLS modes.
const (
	// SMTPTLSImplicit speaks TLS from the first byte (SMTPS, port 465).
	SMTPTLSImplicit = "implicit"
	// SMTPTLSStartTLS upgrades with STARTTLS and refuses a server that
	// does not offer it.
	SMTPTLSStartTLS = "starttls"
	// SMTPTLSNone is plain text, for an unauthenticated relay: only with
	// startTLS: false and no tls field.
	SMTPTLSNone = "none"
)

// SMTP AUTH mechanisms.
const (
	SMTPAuthPlain = "PLAIN"
	SMTPAuthLogin = "LOGIN"
)

// SMTPImplicitTLSPort is the port on which TLS is implicit by default.
const SMTPImplicitTLSPort = 465

// TLSMode is how the channel secures its connection: the tls field when
// set; SMTPTLSNone with startTLS: false; SMTPTLSImplicit on port 465;
// SMTPTLSStartTLS otherwise.
func (c *SMTPChannel) TLSMode() string {
	switch {
	case c.TLS != "":
		return c.TLS
	case c.StartTLS != nil && !*c.StartTLS:
		return SMTPTLSNone
	case c.Port == SMTPImplicitTLSPort:
		return SMTPTLSImplicit
	}
	return SMTPTLSStartTLS
}

// smtpSecurity checks the tls and auth fields of an SMTP channel.
func (c *checker) smtpSecurity(m *SMTPChannel) {
	switch {
	case m.TLS == "":
	case m.TLS != SMTPTLSImplicit && m.TLS != SMTPTLSStartTLS:
		c.errorf("spec.smtp.tls", "%q is not one of implicit, starttls", m.TLS)
	case m.StartTLS == nil:
	case m.TLS == SMTPTLSImplicit:
		c.errorf("spec.smtp.startTLS", "does not apply with tls: implicit (TLS from the first byte); drop startTLS")
	case !*m.StartTLS:
		c.errorf("spec.smtp.startTLS", "false contradicts tls: starttls; drop startTLS")
	}
	switch {
	case m.Auth == "":
	case m.Auth != SMTPAuthPlain && m.Auth != SMTPAuthLogin:
		c.errorf("spec.smtp.auth", "%q is not one of PLAIN, LOGIN", m.Auth)
	case m.Username == "":
		c.errorf("spec.smtp.auth", "is set but username is not: nothing to authenticate with")
	}
}

// alertRoutes checks the routes of an AlertPolicy: each has at least one
// match label (valid keys and values) and names at least one channel, each
// once. Validate checks that the channels exist.
func (c *checker) alertRoutes(routes []AlertRoute) {
	for i, r := range routes {
		p := fmt.Sprintf("spec.routes[%d]", i)
		if len(r.Match) == 0 {
			c.errorf(p+".match", "at least one label to match is required")
		}
		c.labels(p+".match", r.Match, true)
		if len(r.Notify) == 0 {
			c.errorf(p+".notify", "at least one NotificationChannel is required")
		}
		seen := map[string]int{}
		for j, n := range r.Notify {
			np := fmt.Sprintf("%s.notify[%d]", p, j)
			c.name(np, n)
			c.unique(seen, np, p+".notify", n, j)
		}
	}
}

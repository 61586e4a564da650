// Package assign holds the business rules of who deploys what, and when:
// the agents a certificate's deploy block selects among many (Index, which
// applies spec.Deployment.Selects, the one targeting rule), the spec hash
// an agent issues for (SpecHash), when a deployed certificate is renewed
// (RenewalTime), and whether a certificate is ready across its agents
// (Assess). It is pure: the agent API's snapshot, the read API and the
// store's queries all decide through it or spec, so each rule exists once.
package assign

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/certops/certops/spec"
)

// SpecHash identifies what an agent acts on for a certificate: names, key,
// issuer, lifetime and renewal, usages, subject, files, reload, verify and
// reissue. A new hash means a new certificate must be issued. Which agents
// deploy the certificate is not part of it (adding an agent does not
// reissue for the others), nor is suspend (a suspended certificate resumes
// with what it has).
func SpecHash(c *spec.CertificateSpec) string {
	v := *c
	v.Suspend = false
	if c.Deploy != nil {
		d := *c.Deploy
		d.Agents, d.AgentSelector = nil, nil
		v.Deploy = &d
	}
	b, err := spec.CanonicalJSON(&v)
	if err != nil {
		panic(fmt.Sprintf("assign: canonical JSON of a certificate spec: %v", err)) // plain data
	}
	return spec.HashBytes(b)[:32]
}

// RenewalTime is when an agent should renew a certificate valid from
// notBefore to notAfter: notAfter − renewBefore (the spec's setting applied
// to the actual lifetime, see spec.CertificateSpec.RenewalTime), moved
// earlier by up to jitter·renewBefore. The jitter is derived from
// hash(certificate, agent): deterministic, so a restart or another replica
// computes the same time, and uniform over the fleet, so certificates
// issued together are not renewed together.
func RenewalTime(c *spec.CertificateSpec, cert, agent string, notBefore, notAfter time.Time, jitter float64) time.Time {
	base := c.RenewalTime(notBefore, notAfter)
	renewBefore := notAfter.Sub(base)
	return base.Add(-time.Duration(float64(renewBefore) * jitter * jitterFraction(cert, agent)))
}

// RenewalInWindow is when an agent renews inside a renewal window the CA
// suggested (ACME ARI, RFC 9773): at a point of [start, end) derived from
// hash(certificate, agent), so replicas agree and a fleet spreads out; now
// when that point has passed.
func RenewalInWindow(start, end time.Time, cert, agent string, now time.Time) time.Time {
	at := start.Add(time.Duration(float64(end.Sub(start)) * jitterFraction(cert, agent)))
	if at.Before(now) {
		return now
	}
	return at
}

// jitterFraction maps (certificate, agent) uniformly onto [0, 1).
func jitterFraction(cert, agent string) float64 {
	sum := sha256.Sum256([]byte(cert + "\x00" + agent))
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
}

package spec

import (
	"fmt"
	"testing"
)

// BenchmarkCrossObjectChecks measures the token and file clash checks at
// the largest fleet size (50,000 certificates, 10,000 agents, pools of 10
// agents, every tenth certificate deployed by selector), on top of which
// Validate runs its reference checks.
func BenchmarkCrossObjectChecks(b *testing.B) {
	const certs, agents = 50000, 10000
	objs := make([]*Object, 0, certs+agents)
	for i := range agents {
		objs = append(objs, &Object{Kind: KindAgent, Name: fmt.Sprintf("agent-%05d", i),
			Labels: map[string]string{"role": "web", "env": "prod", "pool": fmt.Sprintf("pool-%04d", i/10)},
			Spec:   &AgentSpec{TokenSHA256: fmt.Sprintf("%064x", i+1)}})
	}
	for i := range certs {
		d := &Deployment{Files: DeployFiles{
			Fullchain: fmt.Sprintf("/etc/ssl/fleet/svc-%06d/fullchain.pem", i),
			Key:       fmt.Sprintf("/etc/ssl/fleet/svc-%06d/key.pem", i)}}
		if i%10 == 9 {
			d.AgentSelector = &LabelSelector{MatchLabels: map[string]string{"pool": fmt.Sprintf("pool-%04d", (i%agents)/10), "env": "prod"}}
		} else {
			d.Agents = []string{fmt.Sprintf("agent-%05d", i%agents)}
		}
		objs = append(objs, &Object{Kind: KindCertificate, Name: fmt.Sprintf("svc-%06d", i), Spec: &CertificateSpec{Deploy: d}})
	}
	b.ResetTimer()
	for b.Loop() {
		if errs := append(sharedTokens(objs), sharedFiles(objs)...); len(errs) != 0 {
			b.Fatalf("errors: %v", errs[:1])
		}
	}
}

package chart_test

import (
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// certificate is a cert-manager.io/v1 Certificate, the fields the chart sets
// (no cert-manager Go module here; strict decoding catches typos).
type certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretName  string   `json:"secretName"`
		CommonName  string   `json:"commonName"`
		DNSNames    []string `json:"dnsNames"`
		Duration    string   `json:"duration"`
		RenewBefore string   `json:"renewBefore"`
		PrivateKey  struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
		Usages    []string `json:"usages"`
		IssuerRef struct {
			Name  string `json:"name"`
			Kind  string `json:"kind"`
			Group string `json:"group"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

// serviceNames are the DNS names of the reconciler's Service.
var serviceNames = []string{fullname, fullname + ".certops", fullname + ".certops.svc", fullname + ".certops.svc.cluster.local"}

// checkServerTLS checks that the reconciler serves HTTPS from secretName:
// the flags, the files behind them and the probe schemes.
func checkServerTLS(t *testing.T, m *manifest, secretName string) {
	t.Helper()
	dep := get[appsv1.Deployment](t, m, fullname)
	pod := &dep.Spec.Template
	c := container(t, pod, "certops")
	want := []string{"serve", "--tls-cert-file=/etc/certops/tls/tls.crt", "--tls-key-file=/etc/certops/tls/tls.key"}
	if diff := cmp.Diff(want, c.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	for _, f := range []string{"/etc/certops/tls/tls.crt", "/etc/certops/tls/tls.key"} {
		if !providesFile(pod, c, f) {
			t.Errorf("no mount provides %s", f)
		}
	}
	if v := volume(t, pod, "tls"); v.Secret == nil || v.Secret.SecretName != secretName {
		t.Errorf("tls volume %+v, want Secret %s", v.VolumeSource, secretName)
	}
	// A subPath mount would never see a rotated Secret.
	for _, vm := range c.VolumeMounts {
		if vm.Name == "tls" && vm.SubPath != "" {
			t.Errorf("tls mounted with subPath %q: rotations would not reach the reconciler", vm.SubPath)
		}
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("%s probe %+v, want scheme HTTPS", name, p)
		}
	}
}

// checkAgentTLS checks that a chart agent talks HTTPS to the in-cluster
// Service and verifies it with ca.crt of the chart's TLS Secret (never its key).
func checkAgentTLS(t *testing.T, pod *corev1.PodTemplateSpec, c *corev1.Container) {
	t.Helper()
	if got := envValue(t, c, "CERTOPS_AGENT_SERVER"); !strings.HasPrefix(got, "https://") {
		t.Errorf("CERTOPS_AGENT_SERVER %q, want https://", got)
	}
	if e := env(c, "CERTOPS_AGENT_INSECURE_PLAINTEXT"); e != nil {
		t.Errorf("CERTOPS_AGENT_INSECURE_PLAINTEXT=%q with TLS on", e.Value)
	}
	ca := envValue(t, c, "CERTOPS_AGENT_CA_FILE")
	if !providesFile(pod, c, ca) {
		t.Errorf("CERTOPS_AGENT_CA_FILE=%s: no mount provides the file", ca)
	}
	v := volume(t, pod, "ca")
	if v.Secret == nil || v.Secret.SecretName != fullname+"-tls" {
		t.Fatalf("ca volume %+v, want Secret %s-tls", v.VolumeSource, fullname)
	}
	if len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != "ca.crt" {
		t.Errorf("ca volume items %+v, want only ca.crt", v.Secret.Items)
	}
}

// TestTLSSelfSigned: by default the chart generates a CA and a serving
// certificate for the Service names, kept on uninstall; the reconciler
// serves it and the agents verify it.
func TestTLSSelfSigned(t *testing.T) {
	m := renderScenario(t, "agent-daemonset-values.yaml", false)
	s := get[corev1.Secret](t, m, fullname+"-tls")
	if s.Type != corev1.SecretTypeTLS {
		t.Errorf("type %q, want %q", s.Type, corev1.SecretTypeTLS)
	}
	if s.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Errorf("annotations %v, want helm.sh/resource-policy: keep", s.Annotations)
	}
	parse := func(key string) *x509.Certificate {
		t.Helper()
		b, _ := pem.Decode(s.Data[key])
		if b == nil {
			t.Fatalf("%s is not PEM: %q", key, s.Data[key])
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		return c
	}
	ca, leaf := parse("ca.crt"), parse("tls.crt")
	if !ca.IsCA {
		t.Errorf("ca.crt is not a CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, name := range serviceNames {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("tls.crt does not verify for %s against ca.crt: %v", name, err)
		}
	}
	if b, _ := pem.Decode(s.Data["tls.key"]); b == nil || !strings.Contains(b.Type, "PRIVATE KEY") {
		t.Errorf("tls.key is not a PEM private key")
	}
	checkServerTLS(t, m, fullname+"-tls")
	ds := get[appsv1.DaemonSet](t, m, fullname+"-agent")
	checkAgentTLS(t, &ds.Spec.Template, container(t, &ds.Spec.Template, "agent"))

	dm := renderScenario(t, "agent-deployment-values.yaml", false)
	for _, d := range all[appsv1.Deployment](dm) {
		if d.Name == fullname {
			continue
		}
		checkAgentTLS(t, &d.Spec.Template, container(t, &d.Spec.Template, "agent"))
	}
}

// TestTLSSecret: tls.mode secret serves a user-provided Secret and renders none.
func TestTLSSecret(t *testing.T) {
	m := renderScenario(t, "agent-daemonset-values.yaml", false, "tls.mode=secret", "tls.secretName=my-tls")
	if o := m.lookup("Secret", fullname+"-tls"); o != nil {
		t.Errorf("tls.mode secret renders %s", o)
	}
	checkServerTLS(t, m, "my-tls")
	ds := get[appsv1.DaemonSet](t, m, fullname+"-agent")
	if v := volume(t, &ds.Spec.Template, "ca"); v.Secret == nil || v.Secret.SecretName != "my-tls" {
		t.Errorf("agent ca volume %+v, want Secret my-tls", v.VolumeSource)
	}
	checkReferences(t, m, []string{"my-tls", "certops-agent-tokens"})
}

// TestTLSCertManager: tls.mode certManager renders a Certificate for the
// Service names into the Secret the reconciler mounts.
func TestTLSCertManager(t *testing.T) {
	m := renderScenario(t, "tls-cert-manager-values.yaml", false)
	if o := m.lookup("Secret", fullname+"-tls"); o != nil {
		t.Errorf("tls.mode certManager renders %s itself", o)
	}
	c := get[certificate](t, m, fullname+"-tls")
	if c.Spec.SecretName != fullname+"-tls" {
		t.Errorf("secretName %q, want %s-tls", c.Spec.SecretName, fullname)
	}
	if diff := cmp.Diff(append(slices.Clone(serviceNames), "certops.example.com"), c.Spec.DNSNames); diff != "" {
		t.Errorf("dnsNames (-want +got):\n%s", diff)
	}
	if r := c.Spec.IssuerRef; r.Name != "certops-ca" || r.Kind != "ClusterIssuer" || r.Group != "cert-manager.io" {
		t.Errorf("issuerRef %+v", r)
	}
	if !slices.Contains(c.Spec.Usages, "server auth") {
		t.Errorf("usages %v lack server auth", c.Spec.Usages)
	}
	checkServerTLS(t, m, fullname+"-tls")
	for _, d := range all[appsv1.Deployment](m) {
		if d.Name != fullname {
			checkAgentTLS(t, &d.Spec.Template, container(t, &d.Spec.Template, "agent"))
		}
	}
}

// TestTLSDisabled: tls.enabled=false serves plain HTTP, and only then are
// the chart's agents allowed http://.
func TestTLSDisabled(t *testing.T) {
	m := renderScenario(t, "agent-daemonset-values.yaml", false, "tls.enabled=false")
	if o := m.lookup("Secret", fullname+"-tls"); o != nil {
		t.Errorf("tls.enabled=false renders %s", o)
	}
	dep := get[appsv1.Deployment](t, m, fullname)
	c := container(t, &dep.Spec.Template, "certops")
	if diff := cmp.Diff([]string{"serve"}, c.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	if c.LivenessProbe.HTTPGet.Scheme != corev1.URISchemeHTTP || c.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Errorf("probe schemes %q %q, want HTTP", c.LivenessProbe.HTTPGet.Scheme, c.ReadinessProbe.HTTPGet.Scheme)
	}
	ds := get[appsv1.DaemonSet](t, m, fullname+"-agent")
	a := container(t, &ds.Spec.Template, "agent")
	if got, want := envValue(t, a, "CERTOPS_AGENT_SERVER"), "http://rel-certops.certops.svc:8080"; got != want {
		t.Errorf("CERTOPS_AGENT_SERVER %q, want %q", got, want)
	}
	if got := envValue(t, a, "CERTOPS_AGENT_INSECURE_PLAINTEXT"); got != "true" {
		t.Errorf("CERTOPS_AGENT_INSECURE_PLAINTEXT %q, want true for the http:// Service", got)
	}
	if e := env(a, "CERTOPS_AGENT_CA_FILE"); e != nil {
		t.Errorf("CERTOPS_AGENT_CA_FILE=%q without TLS", e.Value)
	}
}

// TestNetworkPolicyAdmitsAgents: with networkPolicy.ingressFrom set, the
// chart's own agents may still reach the reconciler's port.
func TestNetworkPolicyAdmitsAgents(t *testing.T) {
	m := renderScenario(t, "all-on-values.yaml", false)
	np := get[networkingv1.NetworkPolicy](t, m, fullname)
	ds := get[appsv1.DaemonSet](t, m, fullname+"-agent")
	podLabels := labels.Set(ds.Spec.Template.Labels)
	admitted := false
	for _, rule := range np.Spec.Ingress {
		for _, peer := range rule.From {
			// A peer without namespaceSelector selects pods in the policy's own namespace.
			if peer.PodSelector == nil || peer.NamespaceSelector != nil || peer.IPBlock != nil {
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
			if err != nil {
				t.Fatal(err)
			}
			if sel.Matches(podLabels) {
				admitted = true
			}
		}
	}
	if !admitted {
		t.Errorf("NetworkPolicy %s does not admit the agent pods (labels %v): %+v", np.Name, podLabels, np.Spec.Ingress)
	}
	// The reconciler's pods are not let in by the agents' peer.
	dep := get[appsv1.Deployment](t, m, fullname)
	for _, peer := range np.Spec.Ingress[0].From {
		if peer.PodSelector != nil && peer.NamespaceSelector == nil {
			sel, _ := metav1.LabelSelectorAsSelector(peer.PodSelector)
			if sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
				t.Errorf("the agents' peer %v also selects the reconciler", peer.PodSelector)
			}
		}
	}

	// Without agents nothing is added to the listed peers.
	noAgents := renderScenario(t, "all-on-values.yaml", false, "agent.enabled=false")
	if from := get[networkingv1.NetworkPolicy](t, noAgents, fullname).Spec.Ingress[0].From; len(from) != 2 {
		t.Errorf("agent.enabled=false: %d peers, want the 2 of ingressFrom", len(from))
	}
}

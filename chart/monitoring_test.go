package chart_test

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite chart/files/prometheus-rules.yaml from `certops rules --format prometheusrule`")

// prometheusRule is the part of monitoring.coreos.com/v1 PrometheusRule the
// chart and `certops rules` use; decoding is strict, so a field outside it
// fails the test (add it here once it is checked to exist in the CRD).
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              prometheusRuleSpec `json:"spec"`
}

type prometheusRuleSpec struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name                    string            `json:"name"`
	Labels                  map[string]string `json:"labels,omitempty"`
	Interval                string            `json:"interval,omitempty"`
	QueryOffset             string            `json:"query_offset,omitempty"`
	Limit                   *int              `json:"limit,omitempty"`
	PartialResponseStrategy string            `json:"partial_response_strategy,omitempty"`
	Rules                   []rule            `json:"rules"`
}

type rule struct {
	Record        string             `json:"record,omitempty"`
	Alert         string             `json:"alert,omitempty"`
	Expr          intstr.IntOrString `json:"expr"`
	For           string             `json:"for,omitempty"`
	KeepFiringFor string             `json:"keep_firing_for,omitempty"`
	Labels        map[string]string  `json:"labels,omitempty"`
	Annotations   map[string]string  `json:"annotations,omitempty"`
}

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the chart uses.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              serviceMonitorSpec `json:"spec"`
}

type serviceMonitorSpec struct {
	Selector          metav1.LabelSelector `json:"selector"`
	NamespaceSelector struct {
		Any        bool     `json:"any,omitempty"`
		MatchNames []string `json:"matchNames,omitempty"`
	} `json:"namespaceSelector"`
	Endpoints []endpoint `json:"endpoints"`
}

type endpoint struct {
	Port          string         `json:"port"`
	Path          string         `json:"path"`
	Scheme        string         `json:"scheme"`
	Interval      string         `json:"interval"`
	ScrapeTimeout string         `json:"scrapeTimeout"`
	Authorization *authorization `json:"authorization,omitempty"`
	TLSConfig     *tlsConfig     `json:"tlsConfig,omitempty"`
}

// tlsConfig is the Prometheus Operator's SafeTLSConfig, the fields the chart sets.
type tlsConfig struct {
	ServerName string `json:"serverName"`
	CA         struct {
		Secret *corev1.SecretKeySelector `json:"secret"`
	} `json:"ca"`
}

type authorization struct {
	Type        string                    `json:"type"`
	Credentials *corev1.SecretKeySelector `json:"credentials"`
}

var (
	certopsOnce sync.Once
	certopsBin  string
	certopsErr  error
)

// certopsCommand builds cmd/certops once and returns its path.
func certopsCommand(t *testing.T) string {
	t.Helper()
	certopsOnce.Do(func() {
		certopsBin = filepath.Join(tmpRoot, "bin", "certops")
		cmd := exec.Command("go", "build", "-o", certopsBin, "./cmd/certops")
		cmd.Dir = moduleRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			certopsErr = &buildError{err: err, out: out}
		}
	})
	if certopsErr != nil {
		t.Fatalf("go build ./cmd/certops: %v", certopsErr)
	}
	return certopsBin
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + string(e.out) }

// rulesFromCommand runs `certops rules --format prometheusrule` on the
// example config repository (the command validates its DIR; the rules do not
// depend on it) and decodes its PrometheusRule strictly.
func rulesFromCommand(t *testing.T, name, ns string) *prometheusRule {
	t.Helper()
	cmd := exec.Command(certopsCommand(t), "rules", filepath.Join("examples", "config"),
		"--format", "prometheusrule", "--name", name, "--namespace", ns)
	cmd.Dir = moduleRoot
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("`certops rules --format prometheusrule --name %s --namespace %s` failed (%v): %s\n"+
			"The PrometheusRule the chart ships (chart/files/prometheus-rules.yaml) must be exactly what this command prints. "+
			"Once the command works, regenerate the file with: go test ./chart -run TestPrometheusRule -update",
			name, ns, err, bytes.TrimSpace(stderr.Bytes()))
	}
	js, err := yaml.YAMLToJSONStrict(stdout.Bytes())
	if err != nil {
		t.Fatalf("certops rules output: %v\n%s", err, stdout.String())
	}
	var pr prometheusRule
	strictErrs, err := sigsjson.UnmarshalStrict(js, &pr, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil || len(strictErrs) > 0 {
		t.Fatalf("certops rules output does not decode strictly as a PrometheusRule: %v %v\n%s", err, strictErrs, stdout.String())
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Fatalf("certops rules printed %s %s, want monitoring.coreos.com/v1 PrometheusRule", pr.APIVersion, pr.Kind)
	}
	return &pr
}

const rulesFileHeader = `# The spec of the PrometheusRule that ` + "`certops rules --format prometheusrule`" + `
# prints. Generated: do not edit. Regenerate with
#   go test ./chart -run TestPrometheusRule -update
`

// TestPrometheusRule: the chart's PrometheusRule holds exactly what
// `certops rules` renders.
func TestPrometheusRule(t *testing.T) {
	want := rulesFromCommand(t, fullname, namespace)
	if *update {
		b, err := yaml.Marshal(want.Spec)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(moduleRoot, "chart", "files", "prometheus-rules.yaml")
		if err := os.WriteFile(path, append([]byte(rulesFileHeader), b...), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}

	out, err := helmTemplate("-f", filepath.Join("chart", "ci", "prometheus-rules-values.yaml"),
		"--show-only", "templates/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	got := get[prometheusRule](t, m, fullname)
	if got.Namespace != want.Namespace {
		t.Errorf("namespace %q, certops rules says %q", got.Namespace, want.Namespace)
	}
	if got.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("labels %v lack monitoring.prometheusRules.labels (release: kube-prometheus-stack)", got.Labels)
	}
	if len(want.Spec.Groups) == 0 {
		t.Error("certops rules printed no rule groups")
	}
	if diff := cmp.Diff(want.Spec, got.Spec); diff != "" {
		t.Errorf("the chart's PrometheusRule spec differs from `certops rules` (-command +chart):\n%s\n"+
			"Regenerate chart/files/prometheus-rules.yaml: go test ./chart -run TestPrometheusRule -update", diff)
	}
}

// TestPrometheusRuleOff: no PrometheusRule or ServiceMonitor unless asked for
// (their CRDs may not exist in the cluster).
func TestPrometheusRuleOff(t *testing.T) {
	m := renderScenario(t, "defaults-values.yaml", false)
	if n := len(all[prometheusRule](m)) + len(all[serviceMonitor](m)); n != 0 {
		t.Errorf("defaults render %d Prometheus Operator objects, want 0", n)
	}
}

// TestServiceMonitor: /metrics of every replica, with the API bearer token
// from the same Secret the reconciler reads.
func TestServiceMonitor(t *testing.T) {
	m := renderScenario(t, "prometheus-rules-values.yaml", false)
	sm := get[serviceMonitor](t, m, fullname)
	if sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("labels %v lack monitoring.serviceMonitor.labels", sm.Labels)
	}
	svc := get[corev1.Service](t, m, fullname)
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(svc.Labels)) {
		t.Errorf("selector %v does not select Service %s (labels %v)", sel, svc.Name, svc.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("%d endpoints, want 1", len(sm.Spec.Endpoints))
	}
	ep := sm.Spec.Endpoints[0]
	if ep.Port != "http" || ep.Path != "/metrics" {
		t.Errorf("endpoint port %q path %q, want http /metrics", ep.Port, ep.Path)
	}
	want := &authorization{Type: "Bearer", Credentials: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: fullname + "-api"}, Key: "token"}}
	if diff := cmp.Diff(want, ep.Authorization); diff != "" {
		t.Errorf("authorization (-want +got):\n%s", diff)
	}
	// Scraped over HTTPS, verified with the CA of the reconciler's TLS Secret.
	if ep.Scheme != "https" || ep.TLSConfig == nil || ep.TLSConfig.ServerName != fullname ||
		ep.TLSConfig.CA.Secret == nil || ep.TLSConfig.CA.Secret.Name != fullname+"-tls" || ep.TLSConfig.CA.Secret.Key != "ca.crt" {
		t.Errorf("endpoint scheme %q tlsConfig %+v, want https with ca.crt of %s-tls and serverName %s", ep.Scheme, ep.TLSConfig, fullname, fullname)
	}
	plain := renderScenario(t, "prometheus-rules-values.yaml", false, "tls.enabled=false")
	if ep := get[serviceMonitor](t, plain, fullname).Spec.Endpoints[0]; ep.Scheme != "http" || ep.TLSConfig != nil {
		t.Errorf("tls.enabled=false: scheme %q tlsConfig %+v, want http and none", ep.Scheme, ep.TLSConfig)
	}
	// The reconciler reads the token from the same Secret.
	dep := get[appsv1.Deployment](t, m, fullname)
	if v := volume(t, &dep.Spec.Template, "api-token"); v.Secret == nil || v.Secret.SecretName != fullname+"-api" {
		t.Errorf("the reconciler's api-token volume is %+v, want Secret %s-api", v.VolumeSource, fullname)
	}

	// Without the API token, /metrics is open and no credentials are sent.
	open := renderScenario(t, "prometheus-rules-values.yaml", false, "api.auth.enabled=false")
	if a := get[serviceMonitor](t, open, fullname).Spec.Endpoints[0].Authorization; a != nil {
		t.Errorf("api.auth.enabled=false: authorization %+v, want none", a)
	}
}

package chart_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	release   = "rel"
	namespace = "certops"
	// kubeVersion is passed to helm: the pinned helm is built without the
	// version ldflags and would otherwise assume Kubernetes v1.20.
	kubeVersion = "1.33.0"
	fullname    = "rel-certops"
)

var (
	// moduleRoot is the directory of go.mod; helm runs there, on "chart".
	moduleRoot string
	// helmBin is the pinned helm binary (go tool -n helm).
	helmBin string
	// tmpRoot holds helm's directories and built binaries; removed after the tests.
	tmpRoot string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	moduleRoot = root
	cmd := exec.Command("go", "tool", "-n", "helm")
	cmd.Dir = moduleRoot
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart tests: building the pinned helm (go tool -n helm):", err)
		return 1
	}
	helmBin = strings.TrimSpace(string(out))

	// helm touches its config and cache directories; keep them out of $HOME,
	// and point it at no cluster at all.
	home, err := os.MkdirTemp("", "certops-chart-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(home)
	tmpRoot = home
	for _, v := range []string{"HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"} {
		os.Setenv(v, filepath.Join(home, strings.ToLower(v)))
	}
	os.Setenv("KUBECONFIG", filepath.Join(home, "no-kubeconfig"))
	return m.Run()
}

// scenario is one values file in chart/ci, and the objects its rendering
// refers to without rendering them (Secrets, PVCs the user creates).
type scenario struct {
	file     string
	external []string
}

// scenarios is the test matrix: every file in chart/ci (TestScenariosComplete).
var scenarios = []scenario{
	{file: "defaults-values.yaml"},
	{file: "backup-pvc-values.yaml"},
	{file: "backup-s3-values.yaml", external: []string{"certops-backup-s3"}},
	{file: "prometheus-rules-values.yaml"},
	{file: "migrations-hook-values.yaml"},
	{file: "agent-daemonset-values.yaml", external: []string{"certops-agent-tokens"}},
	{file: "agent-deployment-values.yaml", external: []string{"certops-agent-web-02", "shop-certs"}},
	{file: "external-db-values.yaml", external: []string{"certops-db", "certops-db-ca", "certops-git-ssh"}},
	{file: "all-on-values.yaml", external: []string{"certops-api", "certops-ca", "certops-acme-account"}},
	// The Secret is cert-manager's to write.
	{file: "tls-cert-manager-values.yaml", external: []string{"rel-certops-tls"}},
}

// helm runs the pinned helm in the module root.
func helm(args ...string) (string, error) {
	cmd := exec.Command(helmBin, args...)
	cmd.Dir = moduleRoot
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// helmTemplate renders the chart as release "rel" in namespace "certops".
func helmTemplate(args ...string) (string, error) {
	return helm(append([]string{"template", release, "chart", "--namespace", namespace, "--kube-version", kubeVersion}, args...)...)
}

var renders sync.Map // strings.Join(args, " ") → renderResult

type renderResult struct {
	m   *manifest
	err error
}

// render renders the chart with args (values files relative to the module
// root, --set flags, --is-upgrade) and decodes it strictly; renderings are
// cached, the tests share them.
func render(t *testing.T, args ...string) *manifest {
	t.Helper()
	key := strings.Join(args, "\x00")
	if r, ok := renders.Load(key); ok {
		res := r.(renderResult)
		if res.err != nil {
			t.Fatal(res.err)
		}
		return res.m
	}
	out, err := helmTemplate(args...)
	var m *manifest
	if err == nil {
		m, err = decodeManifest(out)
	}
	renders.Store(key, renderResult{m: m, err: err})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// renderScenario renders one ci/ values file, as an install or an upgrade.
func renderScenario(t *testing.T, file string, upgrade bool, set ...string) *manifest {
	t.Helper()
	args := []string{"-f", filepath.Join("chart", "ci", file)}
	if upgrade {
		args = append(args, "--is-upgrade")
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return render(t, args...)
}

// object is one rendered Kubernetes object.
type object struct {
	apiVersion, kind string
	meta             metav1.ObjectMeta
	// typed is a pointer to the API type it was decoded into.
	typed any
}

func (o object) String() string { return o.kind + "/" + o.meta.Name }

// manifest is the output of helm template.
type manifest struct{ objects []object }

// apiTypes maps apiVersion/kind to the Go type every rendered object must
// decode into without unknown fields. The Prometheus Operator types are
// minimal local structs (no Go module of theirs here).
var apiTypes = map[string]func() any{
	"v1/ConfigMap":                            func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                               func() any { return new(corev1.Secret) },
	"v1/Service":                              func() any { return new(corev1.Service) },
	"v1/ServiceAccount":                       func() any { return new(corev1.ServiceAccount) },
	"v1/PersistentVolumeClaim":                func() any { return new(corev1.PersistentVolumeClaim) },
	"apps/v1/Deployment":                      func() any { return new(appsv1.Deployment) },
	"apps/v1/StatefulSet":                     func() any { return new(appsv1.StatefulSet) },
	"apps/v1/DaemonSet":                       func() any { return new(appsv1.DaemonSet) },
	"batch/v1/Job":                            func() any { return new(batchv1.Job) },
	"batch/v1/CronJob":                        func() any { return new(batchv1.CronJob) },
	"networking.k8s.io/v1/Ingress":            func() any { return new(networkingv1.Ingress) },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return new(networkingv1.NetworkPolicy) },
	"policy/v1/PodDisruptionBudget":           func() any { return new(policyv1.PodDisruptionBudget) },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return new(prometheusRule) },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return new(serviceMonitor) },
	"cert-manager.io/v1/Certificate":          func() any { return new(certificate) },
}

// decodeManifest splits helm's output into documents and decodes each
// strictly: duplicate keys, unknown fields and wrong types are errors, and
// so are kinds the chart is not expected to render and two objects of the
// same kind and name.
func decodeManifest(rendered string) (*manifest, error) {
	m := &manifest{}
	seen := map[string]bool{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(rendered)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("%w in\n%s", err, doc)
		}
		if string(js) == "null" { // a document of comments only
			continue
		}
		var head struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Metadata   metav1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(js, &head); err != nil {
			return nil, fmt.Errorf("%w in\n%s", err, doc)
		}
		newType, ok := apiTypes[head.APIVersion+"/"+head.Kind]
		if !ok {
			return nil, fmt.Errorf("unexpected object %s %s/%s", head.APIVersion, head.Kind, head.Metadata.Name)
		}
		typed := newType()
		strictErrs, err := sigsjson.UnmarshalStrict(js, typed, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
		if err = errors.Join(append(strictErrs, err)...); err != nil {
			return nil, fmt.Errorf("%s/%s does not decode strictly: %w\n%s", head.Kind, head.Metadata.Name, err, doc)
		}
		o := object{apiVersion: head.APIVersion, kind: head.Kind, meta: head.Metadata, typed: typed}
		if seen[o.String()] {
			return nil, fmt.Errorf("%s is rendered twice", o)
		}
		seen[o.String()] = true
		m.objects = append(m.objects, o)
	}
	return m, nil
}

// names lists the rendered objects as "Kind/name", sorted.
func (m *manifest) names() []string {
	var out []string
	for _, o := range m.objects {
		out = append(out, o.String())
	}
	slices.Sort(out)
	return out
}

// lookup returns the object of the given kind and name, or nil.
func (m *manifest) lookup(kind, name string) *object {
	for i, o := range m.objects {
		if o.kind == kind && o.meta.Name == name {
			return &m.objects[i]
		}
	}
	return nil
}

// get returns the typed object of type T named name; the test fails without one.
func get[T any](t *testing.T, m *manifest, name string) *T {
	t.Helper()
	for _, o := range m.objects {
		if v, ok := o.typed.(*T); ok && o.meta.Name == name {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T named %q rendered; have %v", zero, name, m.names())
	return nil
}

// all returns every rendered object of type T.
func all[T any](m *manifest) []*T {
	var out []*T
	for _, o := range m.objects {
		if v, ok := o.typed.(*T); ok {
			out = append(out, v)
		}
	}
	return out
}

// workload is an object with a pod template.
type workload struct {
	name     string
	selector *metav1.LabelSelector // nil for Jobs and CronJobs
	pod      *corev1.PodTemplateSpec
	claims   []string // a StatefulSet's volumeClaimTemplates: volumes too
}

func workloads(m *manifest) []workload {
	var out []workload
	for _, o := range m.objects {
		switch v := o.typed.(type) {
		case *appsv1.Deployment:
			out = append(out, workload{name: o.String(), selector: v.Spec.Selector, pod: &v.Spec.Template})
		case *appsv1.StatefulSet:
			w := workload{name: o.String(), selector: v.Spec.Selector, pod: &v.Spec.Template}
			for _, c := range v.Spec.VolumeClaimTemplates {
				w.claims = append(w.claims, c.Name)
			}
			out = append(out, w)
		case *appsv1.DaemonSet:
			out = append(out, workload{name: o.String(), selector: v.Spec.Selector, pod: &v.Spec.Template})
		case *batchv1.Job:
			out = append(out, workload{name: o.String(), pod: &v.Spec.Template})
		case *batchv1.CronJob:
			out = append(out, workload{name: o.String(), pod: &v.Spec.JobTemplate.Spec.Template})
		}
	}
	return out
}

// container returns the pod's container named name.
func container(t *testing.T, pod *corev1.PodTemplateSpec, name string) *corev1.Container {
	t.Helper()
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// env returns the container's variable name, or nil.
func env(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// envValue returns the literal value of a variable; the test fails if it is
// missing or comes from a reference.
func envValue(t *testing.T, c *corev1.Container, name string) string {
	t.Helper()
	e := env(c, name)
	if e == nil {
		t.Fatalf("container %s: no %s", c.Name, name)
	}
	if e.ValueFrom != nil {
		t.Fatalf("container %s: %s comes from %+v, want a literal", c.Name, name, e.ValueFrom)
	}
	return e.Value
}

// secretEnv returns the Secret reference of a variable; the test fails if it has none.
func secretEnv(t *testing.T, c *corev1.Container, name string) *corev1.SecretKeySelector {
	t.Helper()
	e := env(c, name)
	if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		t.Fatalf("container %s: %s is not from a Secret: %+v", c.Name, name, e)
	}
	return e.ValueFrom.SecretKeyRef
}

// volume returns the pod's volume named name.
func volume(t *testing.T, pod *corev1.PodTemplateSpec, name string) *corev1.Volume {
	t.Helper()
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return &pod.Spec.Volumes[i]
		}
	}
	t.Fatalf("no volume %q", name)
	return nil
}

// providesFile reports whether a mount of the container puts a file at
// path: a mount at path's directory of a volume that has no items, or has an
// item with that file name. Paths with $(VAR) check the directory only.
func providesFile(pod *corev1.PodTemplateSpec, c *corev1.Container, path string) bool {
	dir, file := filepath.Dir(path), filepath.Base(path)
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != dir {
			continue
		}
		for _, v := range pod.Spec.Volumes {
			if v.Name != vm.Name {
				continue
			}
			var items []corev1.KeyToPath
			switch {
			case v.Secret != nil:
				items = v.Secret.Items
			case v.ConfigMap != nil:
				items = v.ConfigMap.Items
			}
			if len(items) == 0 || strings.HasPrefix(file, "$(") {
				return true
			}
			for _, it := range items {
				if it.Path == file {
					return true
				}
			}
		}
	}
	return false
}

// TestScenariosComplete keeps the matrix and chart/ci in step.
func TestScenariosComplete(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(moduleRoot, "chart", "ci", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, f := range files {
		got = append(got, filepath.Base(f))
	}
	for _, s := range scenarios {
		want = append(want, s.file)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("chart/ci has %v, the scenarios are %v", got, want)
	}
}

func TestLint(t *testing.T) {
	for _, s := range scenarios {
		t.Run(s.file, func(t *testing.T) {
			t.Parallel()
			if _, err := helm("lint", "--strict", "chart", "--kube-version", kubeVersion, "-f", filepath.Join("chart", "ci", s.file)); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestRenderMatrix renders every scenario, as an install and as an upgrade,
// and checks what holds for every object and every pod.
func TestRenderMatrix(t *testing.T) {
	for _, s := range scenarios {
		for _, upgrade := range []bool{false, true} {
			name := s.file + "/install"
			if upgrade {
				name = s.file + "/upgrade"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				m := renderScenario(t, s.file, upgrade)
				checkObjects(t, m)
				checkReferences(t, m, s.external)
				for _, w := range workloads(m) {
					checkPod(t, w)
				}
			})
		}
	}
}

// checkObjects checks the metadata of every object.
func checkObjects(t *testing.T, m *manifest) {
	t.Helper()
	for _, o := range m.objects {
		if got := o.meta.Namespace; got != namespace {
			t.Errorf("%s: namespace %q, want %q", o, got, namespace)
		}
		checkLabels(t, o.String(), o.meta.Labels)
	}
}

// checkLabels checks the standard labels.
func checkLabels(t *testing.T, what string, got map[string]string) {
	t.Helper()
	want := map[string]string{
		"app.kubernetes.io/name":       "certops",
		"app.kubernetes.io/instance":   release,
		"app.kubernetes.io/version":    "0.1.0",
		"app.kubernetes.io/part-of":    "certops",
		"app.kubernetes.io/managed-by": "Helm",
		"helm.sh/chart":                "certops-0.1.0",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: label %s = %q, want %q", what, k, got[k], v)
		}
	}
	if got["app.kubernetes.io/component"] == "" {
		t.Errorf("%s: no app.kubernetes.io/component label", what)
	}
}

// checkPod checks the hardening every pod and container must have, that
// selectors match, and that every mount has its volume and every volume is
// mounted.
func checkPod(t *testing.T, w workload) {
	t.Helper()
	pod := w.pod
	checkLabels(t, w.name+" pod template", pod.Labels)
	if w.selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil {
			t.Errorf("%s: selector: %v", w.name, err)
		} else if !sel.Matches(labels.Set(pod.Labels)) {
			t.Errorf("%s: selector %v does not match the pod labels %v", w.name, sel, pod.Labels)
		}
	}
	ps := pod.Spec.SecurityContext
	if ps == nil || !isTrue(ps.RunAsNonRoot) || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod securityContext %+v: want runAsNonRoot and seccomp RuntimeDefault", w.name, ps)
	}
	if ps != nil && (ps.RunAsUser == nil || *ps.RunAsUser == 0) {
		t.Errorf("%s: pod runs as UID 0 or an unset UID", w.name)
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Errorf("%s: the ServiceAccount token is mounted; certops never calls the Kubernetes API", w.name)
	}
	if pod.Spec.HostNetwork || pod.Spec.HostPID || pod.Spec.HostIPC {
		t.Errorf("%s: uses host namespaces", w.name)
	}

	mounted := map[string]bool{}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		what := w.name + " container " + c.Name
		checkContainerSecurity(t, what, c.SecurityContext)
		if !strings.Contains(c.Image, ":") && !strings.Contains(c.Image, "@") {
			t.Errorf("%s: image %q has neither tag nor digest", what, c.Image)
		}
		if c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: no memory limit", what)
		}
		for _, vm := range c.VolumeMounts {
			mounted[vm.Name] = true
			if !slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name }) &&
				!slices.Contains(w.claims, vm.Name) {
				t.Errorf("%s: mount %q has no volume", what, vm.Name)
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		if !mounted[v.Name] {
			t.Errorf("%s: volume %q is never mounted", w.name, v.Name)
		}
	}
	for _, c := range w.claims {
		if !mounted[c] {
			t.Errorf("%s: volumeClaimTemplate %q is never mounted", w.name, c)
		}
	}
}

// checkContainerSecurity checks one container's securityContext in full:
// the pod-level settings are not relied on.
func checkContainerSecurity(t *testing.T, what string, sc *corev1.SecurityContext) {
	t.Helper()
	if sc == nil {
		t.Errorf("%s: no securityContext", what)
		return
	}
	if !isTrue(sc.RunAsNonRoot) || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("%s: runAsNonRoot %v, runAsUser %v: want non-root", what, sc.RunAsNonRoot, sc.RunAsUser)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Errorf("%s: root filesystem is writable", what)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", what)
	}
	if isTrue(sc.Privileged) {
		t.Errorf("%s: privileged", what)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities %+v, want drop [ALL] and no add", what, sc.Capabilities)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccompProfile %+v, want RuntimeDefault", what, sc.SeccompProfile)
	}
}

// checkReferences checks that every Secret, ConfigMap and claim a pod or
// ServiceMonitor refers to is rendered (with the keys referred to) or is one
// the scenario expects the user to create.
func checkReferences(t *testing.T, m *manifest, external []string) {
	t.Helper()
	check := func(what, kind, name, key string, optional bool) {
		t.Helper()
		o := m.lookup(kind, name)
		if o == nil {
			if !slices.Contains(external, name) {
				t.Errorf("%s refers to %s/%s, which is neither rendered nor an expected external object", what, kind, name)
			}
			return
		}
		if key == "" || optional {
			return
		}
		var ok bool
		switch v := o.typed.(type) {
		case *corev1.Secret:
			_, ok = v.Data[key]
			if !ok {
				_, ok = v.StringData[key]
			}
		case *corev1.ConfigMap:
			_, ok = v.Data[key]
		}
		if !ok {
			t.Errorf("%s refers to key %q of %s/%s, which does not have it", what, key, kind, name)
		}
	}
	for _, w := range workloads(m) {
		pod := w.pod
		for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					check(w.name+" env "+e.Name, "Secret", r.Name, r.Key, isTrue(r.Optional))
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					check(w.name+" env "+e.Name, "ConfigMap", r.Name, r.Key, isTrue(r.Optional))
				}
			}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil {
					check(w.name+" envFrom", "ConfigMap", ef.ConfigMapRef.Name, "", false)
				}
				if ef.SecretRef != nil {
					check(w.name+" envFrom", "Secret", ef.SecretRef.Name, "", false)
				}
			}
		}
		if sa := pod.Spec.ServiceAccountName; sa != "" {
			check(w.name+" serviceAccountName", "ServiceAccount", sa, "", false)
		}
		for _, v := range pod.Spec.Volumes {
			what := w.name + " volume " + v.Name
			switch {
			case v.Secret != nil:
				if len(v.Secret.Items) == 0 {
					check(what, "Secret", v.Secret.SecretName, "", false)
				}
				for _, it := range v.Secret.Items {
					check(what, "Secret", v.Secret.SecretName, it.Key, isTrue(v.Secret.Optional))
				}
			case v.ConfigMap != nil:
				check(what, "ConfigMap", v.ConfigMap.Name, "", false)
				for _, it := range v.ConfigMap.Items {
					check(what, "ConfigMap", v.ConfigMap.Name, it.Key, isTrue(v.ConfigMap.Optional))
				}
			case v.PersistentVolumeClaim != nil:
				check(what, "PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName, "", false)
			}
		}
	}
	for _, sm := range all[serviceMonitor](m) {
		for _, ep := range sm.Spec.Endpoints {
			if a := ep.Authorization; a != nil && a.Credentials != nil {
				check("ServiceMonitor "+sm.Name, "Secret", a.Credentials.Name, a.Credentials.Key, false)
			}
			if c := ep.TLSConfig; c != nil && c.CA.Secret != nil {
				check("ServiceMonitor "+sm.Name+" tlsConfig", "Secret", c.CA.Secret.Name, c.CA.Secret.Key, false)
			}
		}
	}
	for _, sts := range all[appsv1.StatefulSet](m) {
		check("StatefulSet "+sts.Name+" serviceName", "Service", sts.Spec.ServiceName, "", false)
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

// TestSchemaRejects: values.schema.json refuses wrong types, unknown enum
// values and unknown keys before anything is rendered.
func TestSchemaRejects(t *testing.T) {
	for _, tc := range []struct {
		set  string
		want string // part of helm's message: the offending value's path
	}{
		{"agent.kind=Foo", "/agent/kind"},
		{"tls.mode=acme", "/tls/mode"},
		{"tls.enabled=yes", "/tls/enabled"},
		{"tls.certManager.issuerRef.kind=Vault", "/tls/certManager/issuerRef/kind"},
		{"backup.sink=ftp", "/backup/sink"},
		{"git.auth.method=oauth", "/git/auth/method"},
		{"server.replicas=two", "/server/replicas"},
		{"server.replicas=0", "/server/replicas"},
		{"server.replica=2", "'replica' not allowed"},
		{"postgresql.enabled=maybe", "/postgresql/enabled"},
		{"migrations.viaHook=1", "/migrations/viaHook"},
		{"monitoring.prometheusRules.enabled=yes", "/monitoring/prometheusRules/enabled"},
		{"server.logFormat=xml", "/server/logFormat"},
		{"git.interval=5min", "/git/interval"},
		{"server.resources.limits.memory=lots", "/server/resources/limits/memory"},
		{"securityContext.runAsUser=0", "/securityContext/runAsUser"},
		{"externalDatabase.url=postgres://certops:hunter2@db/certops", "/externalDatabase/url"},
		{"ingress.hosts[0].paths[0].pathType=Regex", "/ingress/hosts/0/paths/0/pathType"},
		{"podDisruptionBudget.maxUnavailable=-1", "/podDisruptionBudget/maxUnavailable"},
		{"agent.agents[0].name=Web_01", "/agent/agents/0/name"},
	} {
		t.Run(tc.set, func(t *testing.T) {
			t.Parallel()
			_, err := helmTemplate("-f", filepath.Join("chart", "ci", "defaults-values.yaml"), "--set", tc.set)
			if err == nil {
				t.Fatalf("helm template --set %s succeeded, want a schema error", tc.set)
			}
			if msg := err.Error(); !strings.Contains(msg, "don't meet the specifications of the schema") || !strings.Contains(msg, tc.want) {
				t.Errorf("got %v\nwant a schema error naming %q", err, tc.want)
			}
		})
	}
}

// TestRequiredValues: combinations the schema cannot express fail with a
// message that says what to set.
func TestRequiredValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no git.url", nil, "git.url is required"},
		{"no database", []string{"--set", "git.url=https://x/y.git", "--set", "postgresql.enabled=false"}, "externalDatabase.url"},
		{"both databases", []string{"--set", "git.url=https://x/y.git", "--set", "externalDatabase.url=postgres://certops@db/certops"}, "postgresql.enabled=false"},
		{"deployment agents without entries", []string{"--set", "git.url=https://x/y.git", "--set", "agent.enabled=true", "--set", "agent.kind=Deployment"}, "agent.agents"},
		{"agent without token", []string{"--set", "git.url=https://x/y.git", "--set", "agent.enabled=true", "--set", "agent.kind=Deployment", "--set", "agent.agents[0].name=web-01"}, "token or existingSecret"},
		{"daemonset agents without tokens", []string{"--set", "git.url=https://x/y.git", "--set", "agent.enabled=true"}, "agent.daemonSet.tokensSecret"},
		{"s3 without bucket", []string{"--set", "git.url=https://x/y.git", "--set", "backup.enabled=true", "--set", "backup.sink=s3"}, "backup.s3.bucket"},
		{"local CA without Secret", []string{"--set", "git.url=https://x/y.git", "--set", "localCA.enabled=true"}, "localCA.existingSecret"},
		{"ssh without known_hosts", []string{"--set", "git.url=git@github.com:x/y.git", "--set", "git.auth.method=ssh", "--set", "git.auth.sshPrivateKey=k"}, "git.auth.knownHosts"},
		{"token over ssh", []string{"--set", "git.url=git@github.com:x/y.git", "--set", "git.auth.method=token", "--set", "git.auth.token=t"}, "https:// git.url"},
		{"tls secret without a name", []string{"--set", "git.url=https://x/y.git", "--set", "tls.mode=secret"}, "tls.secretName"},
		{"cert-manager without an issuer", []string{"--set", "git.url=https://x/y.git", "--set", "tls.mode=certManager"}, "tls.certManager.issuerRef.name"},
		{"webhook without secret", []string{"--set", "git.url=https://x/y.git", "--set", "webhooks.github.enabled=true"}, "webhooks.github.secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := helmTemplate(tc.args...)
			if err == nil {
				t.Fatalf("helm template %v succeeded, want an error", tc.args)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v\nwant an error mentioning %q", err, tc.want)
			}
		})
	}
}

// TestNotes renders NOTES.txt (helm template skips it) through a copy of the
// chart in which a ConfigMap carries its text.
func TestNotes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "chart")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(moduleRoot, "chart"))); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes-under-test.txt"), notes, 0o644); err != nil {
		t.Fatal(err)
	}
	wrapper := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes, namespace: x}\n" +
		"data:\n  notes: {{ tpl (.Files.Get \"notes-under-test.txt\") . | toJson }}\n"
	if err := os.WriteFile(filepath.Join(dir, "templates", "zz-notes.yaml"), []byte(wrapper), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"defaults-values.yaml", []string{
			"kubectl -n certops port-forward service/rel-certops 8080:8080",
			"kubectl -n certops get secret rel-certops-api",
			`get secret rel-certops-tls -o jsonpath='{.data.ca\.crt}'`,
			"--cacert ca.crt --resolve rel-certops:8080:127.0.0.1 https://rel-certops:8080/api/v1/status",
			"Backups are OFF",
		}},
		{"external-db-values.yaml", []string{"External database: postgres://certops@db.example.com:5432/certops?sslmode=verify-full"}},
		{"all-on-values.yaml", []string{
			"logs job/rel-certops-migrate",
			"https://certops.example.com/hooks/github",
			"bucket certops-backups",
			"The agent on node N is named N",
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			out, err := helm("template", release, dir, "--namespace", namespace, "--kube-version", kubeVersion,
				"-f", filepath.Join(moduleRoot, "chart", "ci", tc.file), "--show-only", "templates/zz-notes.yaml")
			if err != nil {
				t.Fatal(err)
			}
			var cm corev1.ConfigMap
			if err := yaml.UnmarshalStrict([]byte(out), &cm); err != nil {
				t.Fatal(err)
			}
			got := cm.Data["notes"]
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("NOTES lack %q:\n%s", w, got)
				}
			}
		})
	}
}

package chart_test

import (
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"

	"github.com/certops/certops/agent"
)

// TestDefaults: what a plain install with git.url creates.
func TestDefaults(t *testing.T) {
	m := renderScenario(t, "defaults-values.yaml", false)
	want := []string{
		"ConfigMap/rel-certops",
		"Deployment/rel-certops",
		"PodDisruptionBudget/rel-certops",
		"Secret/rel-certops-api",
		"Secret/rel-certops-postgresql",
		"Secret/rel-certops-tls",
		"Service/rel-certops",
		"Service/rel-certops-postgresql",
		"Service/rel-certops-postgresql-hl",
		"ServiceAccount/rel-certops",
		"StatefulSet/rel-certops-postgresql",
	}
	if diff := cmp.Diff(want, m.names()); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}

	dep := get[appsv1.Deployment](t, m, fullname)
	if got := *dep.Spec.Replicas; got != 1 {
		t.Errorf("replicas %d, want 1", got)
	}
	c := container(t, &dep.Spec.Template, "certops")
	if diff := cmp.Diff([]string{"serve", "--tls-cert-file=/etc/certops/tls/tls.crt", "--tls-key-file=/etc/certops/tls/tls.key"}, c.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness probe %+v, want GET /healthz", c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe %+v, want GET /readyz", c.ReadinessProbe)
	}
	if got := envValue(t, c, "GOMEMLIMIT"); got != "204MiB" {
		t.Errorf("GOMEMLIMIT %q, want 204MiB (80%% of 256Mi)", got)
	}
	if e := env(c, "CERTOPS_MIGRATIONS_VIA_HOOK"); e != nil {
		t.Errorf("CERTOPS_MIGRATIONS_VIA_HOOK is set (%q) with migrations.viaHook=false", e.Value)
	}
	if got, want := envValue(t, c, "CERTOPS_DATABASE_URL"), "postgres://certops@rel-certops-postgresql:5432/certops?sslmode=disable"; got != want {
		t.Errorf("CERTOPS_DATABASE_URL %q, want %q", got, want)
	}
	if ref := secretEnv(t, c, "PGPASSWORD"); ref.Name != fullname+"-postgresql" || ref.Key != "password" {
		t.Errorf("PGPASSWORD from %s/%s, want %s-postgresql/password", ref.Name, ref.Key, fullname)
	}
	cm := get[corev1.ConfigMap](t, m, fullname)
	for k, v := range map[string]string{
		"CERTOPS_REPO":           "https://github.com/example/certops-config.git",
		"CERTOPS_PATH":           ".",
		"CERTOPS_INTERVAL":       "1m",
		"CERTOPS_LISTEN":         ":8080",
		"CERTOPS_API_TOKEN_FILE": "/etc/certops/api/token",
	} {
		if got := cm.Data[k]; got != v {
			t.Errorf("ConfigMap %s = %q, want %q", k, got, v)
		}
	}
	checkServerFiles(t, m)

	pdb := get[policyv1.PodDisruptionBudget](t, m, fullname)
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil {
		t.Errorf("PDB maxUnavailable %v minAvailable %v, want 1 and unset (never blocks a drain)", pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}
}

// checkServerFiles checks that every *_FILE setting of the reconciler
// names a file its mounts provide.
func checkServerFiles(t *testing.T, m *manifest) {
	t.Helper()
	cm := get[corev1.ConfigMap](t, m, fullname)
	dep := get[appsv1.Deployment](t, m, fullname)
	c := container(t, &dep.Spec.Template, "certops")
	for k, v := range cm.Data {
		if strings.HasSuffix(k, "_FILE") && !providesFile(&dep.Spec.Template, c, v) {
			t.Errorf("%s=%s: no mount provides the file", k, v)
		}
	}
}

// TestBundledPostgreSQL: the StatefulSet is never restarted by an upgrade,
// has its volume, probes with pg_isready and takes its password from the Secret.
func TestBundledPostgreSQL(t *testing.T) {
	m := renderScenario(t, "defaults-values.yaml", false)
	sts := get[appsv1.StatefulSet](t, m, fullname+"-postgresql")
	if got := sts.Spec.UpdateStrategy.Type; got != appsv1.OnDeleteStatefulSetStrategyType {
		t.Errorf("updateStrategy %q, want OnDelete", got)
	}
	if got := sts.Spec.PodManagementPolicy; got != appsv1.OrderedReadyPodManagement {
		t.Errorf("podManagementPolicy %q, want OrderedReady", got)
	}
	if got := *sts.Spec.Replicas; got != 1 {
		t.Errorf("replicas %d, want 1", got)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("%d volumeClaimTemplates, want 1", len(sts.Spec.VolumeClaimTemplates))
	}
	pvc := sts.Spec.VolumeClaimTemplates[0]
	if got := pvc.Spec.Resources.Requests.Storage().String(); pvc.Name != "data" || got != "8Gi" {
		t.Errorf("claim template %s of %s, want data of 8Gi", pvc.Name, got)
	}
	if hl := get[corev1.Service](t, m, sts.Spec.ServiceName); hl.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("serviceName %s is not headless (clusterIP %q)", hl.Name, hl.Spec.ClusterIP)
	}

	pod := &sts.Spec.Template
	c := container(t, pod, "postgresql")
	if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
		return vm.Name == "data" && vm.MountPath == "/var/lib/postgresql/data"
	}) {
		t.Errorf("the data volume is not mounted at /var/lib/postgresql/data: %+v", c.VolumeMounts)
	}
	if got := envValue(t, c, "PGDATA"); path.Dir(got) != "/var/lib/postgresql/data" {
		t.Errorf("PGDATA %q, want a subdirectory of the volume (its root may hold lost+found)", got)
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.Exec == nil || len(p.Exec.Command) == 0 || p.Exec.Command[0] != "pg_isready" {
			t.Errorf("%s probe %+v, want exec pg_isready", name, p)
		}
	}
	ref := secretEnv(t, c, "POSTGRES_PASSWORD")
	if ref.Name != fullname+"-postgresql" || ref.Key != "password" {
		t.Errorf("POSTGRES_PASSWORD from %s/%s", ref.Name, ref.Key)
	}
	secret := get[corev1.Secret](t, m, fullname+"-postgresql")
	if len(secret.Data["password"]) < 16 {
		t.Errorf("generated password has %d bytes, want a long random one", len(secret.Data["password"]))
	}
	if secret.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Error("the password Secret is deleted on uninstall, but the data volume and its password survive")
	}

	// An explicit password and an existing Secret.
	m = renderScenario(t, "defaults-values.yaml", false, "postgresql.auth.password=s3cret")
	if got := string(get[corev1.Secret](t, m, fullname+"-postgresql").Data["password"]); got != "s3cret" {
		t.Errorf("password %q, want s3cret", got)
	}
	m = renderScenario(t, "defaults-values.yaml", false, "postgresql.auth.existingSecret=pg", "postgresql.auth.secretKey=pw")
	if m.lookup("Secret", fullname+"-postgresql") != nil {
		t.Error("a password Secret is rendered although postgresql.auth.existingSecret is set")
	}
	sts = get[appsv1.StatefulSet](t, m, fullname+"-postgresql")
	if ref := secretEnv(t, container(t, &sts.Spec.Template, "postgresql"), "POSTGRES_PASSWORD"); ref.Name != "pg" || ref.Key != "pw" {
		t.Errorf("POSTGRES_PASSWORD from %s/%s, want pg/pw", ref.Name, ref.Key)
	}
	dep := get[appsv1.Deployment](t, m, fullname)
	if ref := secretEnv(t, container(t, &dep.Spec.Template, "certops"), "PGPASSWORD"); ref.Name != "pg" || ref.Key != "pw" {
		t.Errorf("PGPASSWORD from %s/%s, want pg/pw", ref.Name, ref.Key)
	}
}

// TestExternalDatabase: no bundled PostgreSQL; the URL (without password) is
// passed as is and the password comes from the user's Secret.
func TestExternalDatabase(t *testing.T) {
	m := renderScenario(t, "external-db-values.yaml", false)
	for _, o := range m.objects {
		if strings.Contains(o.meta.Name, "postgresql") {
			t.Errorf("%s rendered with postgresql.enabled=false", o)
		}
	}
	const url = "postgres://certops@db.example.com:5432/certops?sslmode=verify-full&sslrootcert=/etc/certops/db-ca/ca.crt"
	// Every database client gets the same URL, password and CA file.
	for _, w := range workloads(m) {
		c := &w.pod.Spec.Containers[0]
		if got := envValue(t, c, "CERTOPS_DATABASE_URL"); got != url {
			t.Errorf("%s: CERTOPS_DATABASE_URL %q, want %q", w.name, got, url)
		}
		ref := secretEnv(t, c, "PGPASSWORD")
		if ref.Name != "certops-db" || ref.Key != "password" || !isTrue(ref.Optional) {
			t.Errorf("%s: PGPASSWORD from %+v, want optional certops-db/password", w.name, ref)
		}
		if !providesFile(w.pod, c, "/etc/certops/db-ca/ca.crt") {
			t.Errorf("%s: sslrootcert /etc/certops/db-ca/ca.crt is not mounted", w.name)
		}
	}
	if n := len(workloads(m)); n != 3 {
		t.Errorf("%d workloads, want the reconciler, the hook Job and the backup CronJob", n)
	}
	// SSH git credentials from the existing Secret.
	dep := get[appsv1.Deployment](t, m, fullname)
	cm := get[corev1.ConfigMap](t, m, fullname)
	if cm.Data["CERTOPS_GIT_SSH_KEY_FILE"] == "" || cm.Data["CERTOPS_GIT_KNOWN_HOSTS_FILE"] == "" {
		t.Errorf("ssh auth without key or known_hosts file settings: %v", cm.Data)
	}
	if v := volume(t, &dep.Spec.Template, "git-auth"); v.Secret == nil || v.Secret.SecretName != "certops-git-ssh" {
		t.Errorf("git-auth volume %+v, want Secret certops-git-ssh", v.VolumeSource)
	}
	checkServerFiles(t, m)

	// The whole URL from a Secret, and an inline password in a chart Secret.
	m = renderScenario(t, "external-db-values.yaml", false, "externalDatabase.existingSecretUrlKey=url")
	dep = get[appsv1.Deployment](t, m, fullname)
	if ref := secretEnv(t, container(t, &dep.Spec.Template, "certops"), "CERTOPS_DATABASE_URL"); ref.Name != "certops-db" || ref.Key != "url" {
		t.Errorf("CERTOPS_DATABASE_URL from %s/%s, want certops-db/url", ref.Name, ref.Key)
	}
	m = renderScenario(t, "external-db-values.yaml", false, "externalDatabase.existingSecret=", "externalDatabase.password=pw")
	dep = get[appsv1.Deployment](t, m, fullname)
	if ref := secretEnv(t, container(t, &dep.Spec.Template, "certops"), "PGPASSWORD"); ref.Name != fullname+"-database" {
		t.Errorf("PGPASSWORD from %s, want the chart's %s-database", ref.Name, fullname)
	}
	if got := string(get[corev1.Secret](t, m, fullname+"-database").Data["password"]); got != "pw" {
		t.Errorf("password %q, want pw", got)
	}
}

// TestMigrationHook: `certops migrate` runs as a post-install and
// pre-upgrade hook. Never pre-install: the bundled database (a normal
// release object) does not exist before the install's objects are created.
func TestMigrationHook(t *testing.T) {
	install := renderScenario(t, "migrations-hook-values.yaml", false)
	upgrade := renderScenario(t, "migrations-hook-values.yaml", true)
	for _, m := range []*manifest{install, upgrade} {
		job := get[batchv1.Job](t, m, fullname+"-migrate")
		events := strings.Split(job.Annotations["helm.sh/hook"], ",")
		slices.Sort(events)
		if diff := cmp.Diff([]string{"post-install", "pre-upgrade"}, events); diff != "" {
			t.Errorf("hook events (-want +got):\n%s", diff)
		}
		if policy := job.Annotations["helm.sh/hook-delete-policy"]; !strings.Contains(policy, "before-hook-creation") {
			t.Errorf("hook-delete-policy %q lacks before-hook-creation (a second upgrade would fail on the old Job)", policy)
		}
		// Everything the Job needs is a normal release object: it exists
		// after the install's objects (post-install) and before an upgrade
		// applies new ones (pre-upgrade).
		for _, o := range m.objects {
			if _, hook := o.meta.Annotations["helm.sh/hook"]; hook && o.kind != "Job" {
				t.Errorf("%s is a hook; only the migration Job should be", o)
			}
		}

		pod := &job.Spec.Template
		if pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("restartPolicy %q, want Never", pod.Spec.RestartPolicy)
		}
		c := container(t, pod, "migrate")
		if diff := cmp.Diff([]string{"migrate", "--database-wait=10m", "--log-format=json"}, c.Args); diff != "" {
			t.Errorf("args (-want +got):\n%s", diff)
		}
		wait, _ := time.ParseDuration(strings.TrimPrefix(c.Args[1], "--database-wait="))
		if deadline := time.Duration(*job.Spec.ActiveDeadlineSeconds) * time.Second; deadline <= wait {
			t.Errorf("activeDeadlineSeconds %v does not exceed the database wait %v", deadline, wait)
		}
		// The same database as the reconciler.
		dep := get[appsv1.Deployment](t, m, fullname)
		server := container(t, &dep.Spec.Template, "certops")
		if diff := cmp.Diff(dbEnv(server), dbEnv(c)); diff != "" {
			t.Errorf("the Job's database settings differ from the reconciler's (-server +job):\n%s", diff)
		}
	}

	// The reconciler waits for the hook on upgrades only: on the first
	// install it migrates itself, because `helm install --wait` waits for
	// the Deployment before it runs post-install hooks.
	dep := get[appsv1.Deployment](t, install, fullname)
	if e := env(container(t, &dep.Spec.Template, "certops"), "CERTOPS_MIGRATIONS_VIA_HOOK"); e != nil {
		t.Errorf("install: CERTOPS_MIGRATIONS_VIA_HOOK=%q; the first pods must migrate themselves", e.Value)
	}
	dep = get[appsv1.Deployment](t, upgrade, fullname)
	if got := envValue(t, container(t, &dep.Spec.Template, "certops"), "CERTOPS_MIGRATIONS_VIA_HOOK"); got != "true" {
		t.Errorf("upgrade: CERTOPS_MIGRATIONS_VIA_HOOK=%q, want true", got)
	}

	// Without viaHook there is no Job and the pods always migrate.
	for _, upgrade := range []bool{false, true} {
		m := renderScenario(t, "defaults-values.yaml", upgrade)
		if m.lookup("Job", fullname+"-migrate") != nil {
			t.Errorf("upgrade=%v: migration Job rendered with migrations.viaHook=false", upgrade)
		}
		dep := get[appsv1.Deployment](t, m, fullname)
		if e := env(container(t, &dep.Spec.Template, "certops"), "CERTOPS_MIGRATIONS_VIA_HOOK"); e != nil {
			t.Errorf("upgrade=%v: CERTOPS_MIGRATIONS_VIA_HOOK set without migrations.viaHook", upgrade)
		}
	}
}

// dbEnv is the database part of a container's environment.
func dbEnv(c *corev1.Container) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, e := range c.Env {
		if e.Name == "CERTOPS_DATABASE_URL" || e.Name == "PGPASSWORD" {
			out = append(out, e)
		}
	}
	return out
}

// TestBackupPVC: the CronJob runs `certops backup` into the claim, never two at once.
func TestBackupPVC(t *testing.T) {
	m := renderScenario(t, "backup-pvc-values.yaml", false)
	cj := get[batchv1.CronJob](t, m, fullname+"-backup")
	if got := cj.Spec.ConcurrencyPolicy; got != batchv1.ForbidConcurrent {
		t.Errorf("concurrencyPolicy %q, want Forbid", got)
	}
	if got := cj.Spec.Schedule; got != "*/30 * * * *" {
		t.Errorf("schedule %q, want the value of backup.schedule", got)
	}
	pod := &cj.Spec.JobTemplate.Spec.Template
	c := container(t, pod, "backup")
	if diff := cmp.Diff([]string{"backup", "--work-dir=/tmp", "--destination=/var/backups/certops"}, c.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	if got, want := c.Image, "ghcr.io/certops/certops-backup:0.1.0"; got != want {
		t.Errorf("image %q, want %q (the image with pg_dump)", got, want)
	}
	if envValue(t, c, "CERTOPS_DATABASE_URL") == "" || secretEnv(t, c, "PGPASSWORD") == nil {
		t.Error("no database settings")
	}
	v := volume(t, pod, "backups")
	if v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != fullname+"-backup" {
		t.Fatalf("backups volume %+v, want the claim %s-backup", v.VolumeSource, fullname)
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
		return vm.Name == "backups" && vm.MountPath == "/var/backups/certops"
	}) {
		t.Errorf("the claim is not mounted at the --destination: %+v", c.VolumeMounts)
	}
	pvc := get[corev1.PersistentVolumeClaim](t, m, fullname+"-backup")
	if got := pvc.Spec.Resources.Requests.Storage().String(); got != "20Gi" {
		t.Errorf("claim size %s, want 20Gi", got)
	}
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "standard" {
		t.Errorf("storageClassName %v, want standard", pvc.Spec.StorageClassName)
	}
	if pvc.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Error("the backup claim would be deleted by helm uninstall")
	}

	// An existing claim is used as is.
	m = renderScenario(t, "backup-pvc-values.yaml", false, "backup.pvc.existingClaim=old-backups")
	if m.lookup("PersistentVolumeClaim", fullname+"-backup") != nil {
		t.Error("a claim is rendered although backup.pvc.existingClaim is set")
	}
	cj = get[batchv1.CronJob](t, m, fullname+"-backup")
	if v := volume(t, &cj.Spec.JobTemplate.Spec.Template, "backups"); v.PersistentVolumeClaim.ClaimName != "old-backups" {
		t.Errorf("claim %q, want old-backups", v.PersistentVolumeClaim.ClaimName)
	}
}

// TestBackupS3: credentials come from a Secret into the variables the
// BackupPolicy names; no claim.
func TestBackupS3(t *testing.T) {
	m := renderScenario(t, "backup-s3-values.yaml", false)
	if len(all[corev1.PersistentVolumeClaim](m)) != 0 {
		t.Errorf("a claim is rendered for the s3 sink: %v", m.names())
	}
	cj := get[batchv1.CronJob](t, m, fullname+"-backup")
	if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("concurrencyPolicy %q, want Forbid", cj.Spec.ConcurrencyPolicy)
	}
	if cj.Spec.TimeZone == nil || *cj.Spec.TimeZone != "Etc/UTC" {
		t.Errorf("timeZone %v, want Etc/UTC", cj.Spec.TimeZone)
	}
	if got := cj.Annotations["certops.io/backup-s3-bucket"]; got != "certops-backups" {
		t.Errorf("bucket annotation %q, want certops-backups", got)
	}
	c := container(t, &cj.Spec.JobTemplate.Spec.Template, "backup")
	if diff := cmp.Diff([]string{"backup", "--work-dir=/tmp"}, c.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	for name, key := range map[string]string{"BACKUP_S3_ACCESS_KEY_ID": "accessKeyID", "BACKUP_S3_SECRET_ACCESS_KEY": "secretAccessKey"} {
		if ref := secretEnv(t, c, name); ref.Name != "certops-backup-s3" || ref.Key != key {
			t.Errorf("%s from %s/%s, want certops-backup-s3/%s", name, ref.Name, ref.Key, key)
		}
	}
	// Inline keys make a chart Secret (checked by the matrix's reference check).
	m = renderScenario(t, "all-on-values.yaml", false)
	s := get[corev1.Secret](t, m, fullname+"-backup-s3")
	if string(s.Data["accessKeyID"]) != "AKIAEXAMPLE" {
		t.Errorf("inline access key not in the chart's Secret: %v", s.Data)
	}
}

// TestAgentDaemonSet: one agent per node, named after the node, reading its
// node's key of the tokens Secret; hostPaths only for its state and the
// configured deploy targets.
func TestAgentDaemonSet(t *testing.T) {
	m := renderScenario(t, "agent-daemonset-values.yaml", false)
	if len(all[appsv1.DaemonSet](m)) != 1 {
		t.Fatalf("want one DaemonSet: %v", m.names())
	}
	ds := get[appsv1.DaemonSet](t, m, fullname+"-agent")
	pod := &ds.Spec.Template
	c := container(t, pod, "agent")
	name := env(c, "CERTOPS_AGENT_NAME")
	if name == nil || name.ValueFrom == nil || name.ValueFrom.FieldRef == nil || name.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("CERTOPS_AGENT_NAME %+v, want the node name", name)
	}
	if got, want := envValue(t, c, "CERTOPS_AGENT_TOKEN_FILE"), "/etc/certops-agent/tokens/$(CERTOPS_AGENT_NAME)"; got != want {
		t.Errorf("CERTOPS_AGENT_TOKEN_FILE %q, want %q", got, want)
	}
	if v := volume(t, pod, "token"); v.Secret == nil || v.Secret.SecretName != "certops-agent-tokens" {
		t.Errorf("token volume %+v, want Secret certops-agent-tokens", v.VolumeSource)
	}
	if got, want := envValue(t, c, "CERTOPS_AGENT_SERVER"), "https://rel-certops.certops.svc:8080"; got != want {
		t.Errorf("CERTOPS_AGENT_SERVER %q, want %q", got, want)
	}
	checkAgentTLS(t, pod, c)
	checkAgentFiles(t, pod, c)
	if got := hostPaths(pod); !slices.Equal(got, []string{"/etc/ssl/certops", "/var/lib/certops-agent"}) {
		t.Errorf("hostPaths %v, want only the state dir and the configured target", got)
	}
	if got, want := envValue(t, c, "CERTOPS_AGENT_ALLOW_DIRS"), "/etc/ssl/certops"; got != want {
		t.Errorf("CERTOPS_AGENT_ALLOW_DIRS %q, want the deploy targets %q", got, want)
	}
	if ds.Spec.Template.Spec.NodeSelector["certops.io/agent"] != "true" {
		t.Errorf("nodeSelector %v", ds.Spec.Template.Spec.NodeSelector)
	}

	// Inline tokens: one key per node in a chart Secret.
	m = renderScenario(t, "all-on-values.yaml", false)
	s := get[corev1.Secret](t, m, fullname+"-agent-tokens")
	if string(s.Data["node-1"]) != "token-1" || string(s.Data["node-2"]) != "token-2" {
		t.Errorf("tokens Secret %v, want node-1 and node-2", s.Data)
	}
	ds = get[appsv1.DaemonSet](t, m, fullname+"-agent")
	checkAgentFiles(t, &ds.Spec.Template, container(t, &ds.Spec.Template, "agent"))
}

// TestAgentDeployment: one Deployment per agent, each with its own token
// Secret and state claim, one pod at a time, no hostPath.
func TestAgentDeployment(t *testing.T) {
	m := renderScenario(t, "agent-deployment-values.yaml", false)
	if n := len(all[appsv1.DaemonSet](m)); n != 0 {
		t.Errorf("%d DaemonSets with agent.kind=Deployment", n)
	}
	tokens := map[string]string{"web-01": fullname + "-agent-web-01", "web-02": "certops-agent-web-02"}
	var selected []*appsv1.Deployment
	for agent, secret := range tokens {
		dep := get[appsv1.Deployment](t, m, fullname+"-agent-"+agent)
		selected = append(selected, dep)
		if *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("%s: replicas %d strategy %s, want 1 and Recreate (one identity, one pod)", agent, *dep.Spec.Replicas, dep.Spec.Strategy.Type)
		}
		pod := &dep.Spec.Template
		c := container(t, pod, "agent")
		if got := envValue(t, c, "CERTOPS_AGENT_NAME"); got != agent {
			t.Errorf("%s: CERTOPS_AGENT_NAME %q", agent, got)
		}
		if v := volume(t, pod, "token"); v.Secret == nil || v.Secret.SecretName != secret {
			t.Errorf("%s: token volume %+v, want Secret %s", agent, v.VolumeSource, secret)
		}
		if v := volume(t, pod, "state"); v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != dep.Name+"-state" {
			t.Errorf("%s: state volume %+v, want its own claim", agent, v.VolumeSource)
		}
		pvc := get[corev1.PersistentVolumeClaim](t, m, dep.Name+"-state")
		if pvc.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("%s: the state claim (private keys) would be deleted by helm uninstall", agent)
		}
		if got := hostPaths(pod); len(got) != 0 {
			t.Errorf("%s: hostPaths %v without agent.hostPaths", agent, got)
		}
		checkAgentFiles(t, pod, c)
	}
	if s := get[corev1.Secret](t, m, fullname+"-agent-web-01"); string(s.Data["token"]) != "demo-token-web-01-not-a-secret" {
		t.Errorf("web-01 token Secret %v", s.Data)
	}
	// Each Deployment selects only its own pods.
	for _, a := range selected {
		for _, b := range selected {
			if a != b && labelsMatch(a.Spec.Selector.MatchLabels, b.Spec.Template.Labels) {
				t.Errorf("the selector of %s matches the pods of %s", a.Name, b.Name)
			}
		}
	}
}

// checkAgentFiles: the token and CA files are mounted and the state
// directory is a subdirectory of the state volume (the agent chmods it 0700,
// which it can only do to a directory it created).
func checkAgentFiles(t *testing.T, pod *corev1.PodTemplateSpec, c *corev1.Container) {
	t.Helper()
	for _, name := range []string{"CERTOPS_AGENT_TOKEN_FILE", "CERTOPS_AGENT_CA_FILE"} {
		if e := env(c, name); e != nil && !providesFile(pod, c, e.Value) {
			t.Errorf("%s=%s: no mount provides the file", name, e.Value)
		}
	}
	state := envValue(t, c, "CERTOPS_AGENT_STATE_DIR")
	if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
		return vm.Name == "state" && path.Dir(state) == vm.MountPath
	}) {
		t.Errorf("CERTOPS_AGENT_STATE_DIR %s is not a subdirectory of the state mount: %+v", state, c.VolumeMounts)
	}
}

func hostPaths(pod *corev1.PodTemplateSpec) []string {
	var out []string
	for _, v := range pod.Spec.Volumes {
		if v.HostPath != nil {
			out = append(out, v.HostPath.Path)
		}
	}
	slices.Sort(out)
	return out
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestNoAgentsByDefault: agents are opt-in.
func TestNoAgentsByDefault(t *testing.T) {
	m := renderScenario(t, "defaults-values.yaml", false)
	for _, o := range m.objects {
		if o.meta.Labels["app.kubernetes.io/component"] == "agent" {
			t.Errorf("%s rendered without agent.enabled", o)
		}
	}
}

// TestAllOn: every feature at once.
func TestAllOn(t *testing.T) {
	m := renderScenario(t, "all-on-values.yaml", true)
	dep := get[appsv1.Deployment](t, m, fullname)
	if *dep.Spec.Replicas != 3 {
		t.Errorf("replicas %d, want 3", *dep.Spec.Replicas)
	}
	c := container(t, &dep.Spec.Template, "certops")
	if got := envValue(t, c, "GOMEMLIMIT"); got != "409MiB" {
		t.Errorf("GOMEMLIMIT %q, want 409MiB (80%% of 512Mi)", got)
	}
	cm := get[corev1.ConfigMap](t, m, fullname)
	for _, k := range []string{
		"CERTOPS_GIT_TOKEN_FILE", "CERTOPS_GIT_CA_FILE", "CERTOPS_CACHE_DIR", "CERTOPS_API_TOKEN_FILE",
		"CERTOPS_GITHUB_WEBHOOK_SECRET_FILE", "CERTOPS_GITLAB_WEBHOOK_TOKEN_FILE", "CERTOPS_GENERIC_WEBHOOK_SECRET_FILE",
	} {
		if cm.Data[k] == "" {
			t.Errorf("ConfigMap lacks %s", k)
		}
	}
	if got := cm.Data["CERTOPS_PER_CERTIFICATE_METRICS"]; got != "false" {
		t.Errorf("CERTOPS_PER_CERTIFICATE_METRICS %q, want false", got)
	}
	checkServerFiles(t, m)
	for _, mount := range []string{"/etc/certops/ca", "/etc/certops/acme", "/var/cache/certops"} {
		if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == mount }) {
			t.Errorf("nothing mounted at %s", mount)
		}
	}

	ing := get[networkingv1.Ingress](t, m, fullname)
	if ing.Annotations["cert-manager.io/cluster-issuer"] != "letsencrypt" || len(ing.Spec.TLS) != 1 {
		t.Errorf("ingress annotations %v tls %v", ing.Annotations, ing.Spec.TLS)
	}
	if b := ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service; b.Name != fullname || b.Port.Name != "http" {
		t.Errorf("ingress backend %+v", b)
	}

	np := get[networkingv1.NetworkPolicy](t, m, fullname)
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 3 || np.Spec.Ingress[0].Ports[0].Port.String() != "http" {
		t.Errorf("reconciler NetworkPolicy ingress %+v", np.Spec.Ingress)
	}
	pgnp := get[networkingv1.NetworkPolicy](t, m, fullname+"-postgresql")
	from := pgnp.Spec.Ingress[0].From[0].PodSelector
	for _, component := range []string{"server", "migrate", "backup"} {
		if !slices.Contains(from.MatchExpressions[0].Values, component) {
			t.Errorf("the %s pods may not reach PostgreSQL: %+v", component, from)
		}
	}

	pdb := get[policyv1.PodDisruptionBudget](t, m, fullname)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 2 || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PDB minAvailable %v maxUnavailable %v, want 2 and unset", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
	}

	sts := get[appsv1.StatefulSet](t, m, fullname+"-postgresql")
	if diff := cmp.Diff([]string{"postgres", "-c", "max_connections=200"}, container(t, &sts.Spec.Template, "postgresql").Args); diff != "" {
		t.Errorf("postgres args (-want +got):\n%s", diff)
	}
}

// TestGoMemLimit: GOMEMLIMIT is 80% of the memory limit, in MiB.
func TestGoMemLimit(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string // "" = not set
	}{
		{[]string{"server.resources.limits.memory=128Mi"}, "102MiB"},
		{[]string{"server.resources.limits.memory=320Mi"}, "256MiB"},
		{[]string{"server.resources.limits.memory=512Mi"}, "409MiB"},
		{[]string{"server.resources.limits.memory=1Gi"}, "819MiB"},
		{[]string{"server.resources.limits.memory=1.5Gi"}, "1228MiB"},
		{[]string{"server.resources.limits.memory=500M"}, "381MiB"},
		{[]string{"server.resources.limits.memory=536870912"}, "409MiB"},
		{[]string{"server.resources.limits=null"}, ""},
		{[]string{"server.goMemLimit=250MiB"}, "250MiB"},
		{[]string{"server.goMemLimit="}, ""},
	} {
		t.Run(strings.Join(tc.set, ","), func(t *testing.T) {
			t.Parallel()
			m := renderScenario(t, "defaults-values.yaml", false, tc.set...)
			dep := get[appsv1.Deployment](t, m, fullname)
			got := ""
			if e := env(container(t, &dep.Spec.Template, "certops"), "GOMEMLIMIT"); e != nil {
				got = e.Value
			}
			if got != tc.want {
				t.Errorf("GOMEMLIMIT %q, want %q", got, tc.want)
			}
		})
	}
}

// agent.policy renders the host policy into a ConfigMap the agent reads
// with --policy-file; the file decodes strictly as the agent does. Without
// it there is no policy file.
func TestAgentPolicy(t *testing.T) {
	m := render(t, "-f", "chart/ci/agent-daemonset-values.yaml", "--set-json",
		`agent.policy={"allowedReloads":[["nginx","-s","reload"],["/usr/local/bin/hook","*"]],"maxFileMode":"0644"}`)
	cm := get[corev1.ConfigMap](t, m, fullname+"-agent-policy")
	p, err := agent.ParsePolicy([]byte(cm.Data["policy.yaml"]))
	if err != nil {
		t.Fatalf("policy.yaml %q: %v", cm.Data["policy.yaml"], err)
	}
	if len(p.AllowedReloads) != 2 || p.MaxFileMode != "0644" {
		t.Errorf("policy %+v", p)
	}
	pod := &get[appsv1.DaemonSet](t, m, fullname+"-agent").Spec.Template
	c := container(t, pod, "agent")
	if got := envValue(t, c, "CERTOPS_AGENT_POLICY_FILE"); got != "/etc/certops-agent/policy/policy.yaml" {
		t.Errorf("CERTOPS_AGENT_POLICY_FILE %q", got)
	}
	if v := volume(t, pod, "policy"); v.ConfigMap == nil || v.ConfigMap.Name != fullname+"-agent-policy" {
		t.Errorf("policy volume %+v", v.VolumeSource)
	}
	if got := envValue(t, c, "CERTOPS_AGENT_ALLOW_DIRS"); got != "/etc/ssl/certops" {
		t.Errorf("CERTOPS_AGENT_ALLOW_DIRS %q, want the deploy targets beside the policy", got)
	}
	if _, err := helmTemplate("-f", "chart/ci/agent-daemonset-values.yaml", "--set-json", `agent.policy={"allowedReload":[]}`); err == nil {
		t.Error("a misspelt policy field passed the values schema")
	}
	plain := container(t, &get[appsv1.DaemonSet](t, renderScenario(t, "agent-daemonset-values.yaml", false), fullname+"-agent").Spec.Template, "agent")
	if env(plain, "CERTOPS_AGENT_POLICY_FILE") != nil {
		t.Error("CERTOPS_AGENT_POLICY_FILE set without agent.policy")
	}
}

{{/*
Names
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "certops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object name: fullnameOverride, else RELEASE-NAME (RELEASE alone if it contains NAME). */}}
{{- define "certops.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's object name: FULLNAME-SUFFIX. Call with (list $ "suffix"). */}}
{{- define "certops.componentName" -}}
{{- $ctx := index . 0 -}}
{{- printf "%s-%s" (include "certops.fullname" $ctx | trunc 50 | trimSuffix "-") (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "certops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "certops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "certops.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "certops.postgresql.fullname" -}}
{{- include "certops.componentName" (list . "postgresql") -}}
{{- end -}}

{{/*
Labels. Call the component variants with (list $ "component").
*/}}

{{- define "certops.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "certops.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "certops.labels" -}}
{{- $ctx := index . 0 -}}
helm.sh/chart: {{ include "certops.chart" $ctx }}
{{ include "certops.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: certops
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Images. Call with (list $ .Values.x.image).
*/}}
{{- define "certops.image" -}}
{{- $ctx := index . 0 -}}
{{- $img := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $ctx.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/*
Security contexts. Every certops pod and container gets the same hardening;
only the IDs are configurable.
*/}}

{{/* Pod security context. Call with the dict {runAsUser, runAsGroup, fsGroup}. */}}
{{- define "certops.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsGroup }}
fsGroup: {{ .fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context. Call with the dict {runAsUser, runAsGroup}. */}}
{{- define "certops.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Secrets: which Secret holds what.
*/}}

{{- define "certops.apiSecretName" -}}
{{- default (include "certops.componentName" (list . "api")) .Values.api.auth.existingSecret -}}
{{- end -}}

{{- define "certops.gitSecretName" -}}
{{- default (include "certops.componentName" (list . "git")) .Values.git.auth.existingSecret -}}
{{- end -}}

{{- define "certops.webhooksSecretName" -}}
{{- default (include "certops.componentName" (list . "webhooks")) .Values.webhooks.existingSecret -}}
{{- end -}}

{{/* Whether any webhook receiver is enabled ("true" or ""). */}}
{{- define "certops.webhooksEnabled" -}}
{{- if or .Values.webhooks.github.enabled .Values.webhooks.gitlab.enabled .Values.webhooks.generic.enabled -}}true{{- end -}}
{{- end -}}

{{- define "certops.postgresql.secretName" -}}
{{- default (include "certops.postgresql.fullname" .) .Values.postgresql.auth.existingSecret -}}
{{- end -}}

{{/* The chart-made Secret of an external database's password. */}}
{{- define "certops.externalDatabase.secretName" -}}
{{- include "certops.componentName" (list . "database") -}}
{{- end -}}

{{/*
A value kept across upgrades: the existing Secret's key if the Secret exists
(helm upgrade), else a new random string. Call with
(list $ "secret-name" "key" length).
*/}}
{{- define "certops.keptRandom" -}}
{{- $ctx := index . 0 -}}
{{- $existing := lookup "v1" "Secret" $ctx.Release.Namespace (index . 1) -}}
{{- if and $existing $existing.data (hasKey $existing.data (index . 2)) -}}
{{- index $existing.data (index . 2) | b64dec -}}
{{- else -}}
{{- randAlphaNum (index . 3) -}}
{{- end -}}
{{- end -}}

{{/*
Database: the environment every database client (serve, migrate, backup)
gets. The URL never carries the password (the schema refuses one in
externalDatabase.url): pgx and pg_dump both read PGPASSWORD.
*/}}
{{- define "certops.databaseEnv" -}}
{{- if .Values.postgresql.enabled }}
- name: CERTOPS_DATABASE_URL
  value: {{ printf "postgres://%s@%s:5432/%s?sslmode=disable" .Values.postgresql.auth.username (include "certops.postgresql.fullname" .) .Values.postgresql.auth.database | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "certops.postgresql.secretName" . }}
      key: {{ .Values.postgresql.auth.secretKey }}
{{- else }}
{{- $db := .Values.externalDatabase }}
{{- if and $db.existingSecret $db.existingSecretUrlKey }}
- name: CERTOPS_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $db.existingSecret }}
      key: {{ $db.existingSecretUrlKey }}
{{- else }}
- name: CERTOPS_DATABASE_URL
  value: {{ required "externalDatabase.url (or externalDatabase.existingSecret with existingSecretUrlKey) is required when postgresql.enabled is false" $db.url | quote }}
{{- end }}
{{- if $db.existingSecret }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $db.existingSecret }}
      key: {{ $db.existingSecretPasswordKey }}
      optional: true
{{- else if $db.password }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "certops.externalDatabase.secretName" . }}
      key: password
{{- end }}
{{- end }}
{{- end -}}

{{/* The database CA mount of every database client, if any. */}}
{{- define "certops.databaseCAMount" -}}
{{- if and (not .Values.postgresql.enabled) .Values.externalDatabase.caSecret }}
- name: database-ca
  mountPath: /etc/certops/db-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "certops.databaseCAVolume" -}}
{{- if and (not .Values.postgresql.enabled) .Values.externalDatabase.caSecret }}
- name: database-ca
  secret:
    secretName: {{ .Values.externalDatabase.caSecret }}
    defaultMode: 0440
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end -}}

{{/*
Memory: GOMEMLIMIT from the memory limit.
*/}}

{{/* Bytes of a Kubernetes quantity such as 256Mi, 1Gi, 500M or 268435456. */}}
{{- define "certops.quantityBytes" -}}
{{- $q := toString . -}}
{{- $units := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $q -}}
{{- $suffix := trimPrefix $num $q -}}
{{- if or (not $num) (not (hasKey $units $suffix)) -}}
{{- fail (printf "cannot derive GOMEMLIMIT from the memory quantity %q: use a plain number or a Ki/Mi/Gi/Ti/k/M/G/T suffix, or set server.goMemLimit" $q) -}}
{{- end -}}
{{- mulf $num (index $units $suffix) | floor | int64 -}}
{{- end -}}

{{/* GOMEMLIMIT of the reconciler, or "" for none: "auto" is 80% of the memory limit in MiB. */}}
{{- define "certops.goMemLimit" -}}
{{- $v := toString .Values.server.goMemLimit -}}
{{- if eq $v "auto" -}}
{{- $limit := "" -}}
{{- with .Values.server.resources -}}{{- with .limits -}}{{- with .memory -}}{{- $limit = toString . -}}{{- end -}}{{- end -}}{{- end -}}
{{- if $limit -}}
{{- $bytes := include "certops.quantityBytes" $limit | int64 -}}
{{- printf "%dMiB" (div (mul $bytes 4) (mul 5 1048576)) -}}
{{- end -}}
{{- else -}}
{{- $v -}}
{{- end -}}
{{- end -}}

{{/*
TLS of the reconciler (tls.*): the Secret with tls.crt, tls.key and ca.crt.
*/}}
{{- define "certops.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- required "tls.mode secret needs tls.secretName: a Secret with the keys tls.crt, tls.key and ca.crt" .Values.tls.secretName -}}
{{- else -}}
{{- default (include "certops.componentName" (list . "tls")) .Values.tls.secretName -}}
{{- end -}}
{{- end -}}

{{/* The DNS names of the serving certificate: the Service's, then tls.extraDNSNames. */}}
{{- define "certops.tlsDNSNames" -}}
{{- $svc := include "certops.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- concat $names .Values.tls.extraDNSNames | toJson -}}
{{- end -}}

{{/* Whether the chart's agents talk TLS to the in-cluster Service with the chart's CA ("true" or ""). */}}
{{- define "certops.agentChartCA" -}}
{{- if and .Values.tls.enabled (not .Values.agent.server) (not .Values.agent.caBundle) -}}true{{- end -}}
{{- end -}}

{{/*
The reconciler's Service URL inside the cluster.
*/}}
{{- define "certops.serverURL" -}}
{{- if .Values.agent.server -}}
{{- .Values.agent.server -}}
{{- else -}}
{{- printf "%s://%s.%s.svc:%v" (ternary "https" "http" .Values.tls.enabled) (include "certops.fullname" .) .Release.Namespace .Values.service.port -}}
{{- end -}}
{{- end -}}

{{/*
Checks of combinations the schema cannot express. Rendered (as nothing) by
the Deployment template.
*/}}
{{- define "certops.validate" -}}
{{- $_ := required "git.url is required: the config repository certops follows (https://…, ssh://… or git@host:path)" .Values.git.url -}}
{{- if and .Values.postgresql.enabled (or .Values.externalDatabase.url .Values.externalDatabase.existingSecret) -}}
{{- fail "externalDatabase is set but postgresql.enabled is true: set postgresql.enabled=false to use the external database" -}}
{{- end -}}
{{- $auth := .Values.git.auth -}}
{{- if not $auth.existingSecret -}}
{{- if and (eq $auth.method "token") (not $auth.token) -}}{{- fail "git.auth.method token needs git.auth.token or git.auth.existingSecret (key token)" -}}{{- end -}}
{{- if and (eq $auth.method "basic") (not $auth.password) -}}{{- fail "git.auth.method basic needs git.auth.password or git.auth.existingSecret (key password)" -}}{{- end -}}
{{- if and (eq $auth.method "ssh") (not (and $auth.sshPrivateKey $auth.knownHosts)) -}}{{- fail "git.auth.method ssh needs git.auth.sshPrivateKey and git.auth.knownHosts, or git.auth.existingSecret (keys ssh-privatekey, known_hosts)" -}}{{- end -}}
{{- end -}}
{{- if and (eq $auth.method "basic") (not $auth.username) -}}{{- fail "git.auth.method basic needs git.auth.username" -}}{{- end -}}
{{- if and (eq $auth.method "ssh") (hasPrefix "http" .Values.git.url) -}}{{- fail "git.auth.method ssh needs an ssh:// or git@host:path git.url" -}}{{- end -}}
{{- if and (has $auth.method (list "token" "basic")) (not (hasPrefix "http" .Values.git.url)) -}}{{- fail (printf "git.auth.method %s needs an https:// git.url" $auth.method) -}}{{- end -}}
{{- if not .Values.webhooks.existingSecret -}}
{{- if and .Values.webhooks.github.enabled (not .Values.webhooks.github.secret) -}}{{- fail "webhooks.github.enabled needs webhooks.github.secret or webhooks.existingSecret" -}}{{- end -}}
{{- if and .Values.webhooks.gitlab.enabled (not .Values.webhooks.gitlab.token) -}}{{- fail "webhooks.gitlab.enabled needs webhooks.gitlab.token or webhooks.existingSecret" -}}{{- end -}}
{{- if and .Values.webhooks.generic.enabled (not .Values.webhooks.generic.secret) -}}{{- fail "webhooks.generic.enabled needs webhooks.generic.secret or webhooks.existingSecret" -}}{{- end -}}
{{- end -}}
{{- if and .Values.tls.enabled (eq .Values.tls.mode "certManager") (not .Values.tls.certManager.issuerRef.name) -}}
{{- fail "tls.mode certManager needs tls.certManager.issuerRef.name: the cert-manager Issuer or ClusterIssuer that signs the serving certificate" -}}
{{- end -}}
{{- if and .Values.tls.enabled (eq .Values.tls.mode "secret") -}}{{- $_ := include "certops.tlsSecretName" . -}}{{- end -}}
{{- if and .Values.localCA.enabled (not .Values.localCA.existingSecret) -}}
{{- fail "localCA.enabled needs localCA.existingSecret: a kubernetes.io/tls Secret (kubectl create secret tls certops-ca --cert=ca.crt --key=ca.key)" -}}
{{- end -}}
{{- if and .Values.backup.enabled (eq .Values.backup.sink "s3") (not .Values.backup.s3.bucket) -}}
{{- fail "backup.sink s3 needs backup.s3.bucket (the bucket of the BackupPolicy's destination.s3)" -}}
{{- end -}}
{{- if .Values.agent.enabled -}}
{{- if eq .Values.agent.kind "DaemonSet" -}}
{{- if not (or .Values.agent.daemonSet.tokensSecret .Values.agent.daemonSet.tokens) -}}
{{- fail "agent.kind DaemonSet needs agent.daemonSet.tokensSecret (a Secret with one key per node name holding that node's agent token) or agent.daemonSet.tokens" -}}
{{- end -}}
{{- else -}}
{{- if not .Values.agent.agents -}}
{{- fail "agent.kind Deployment needs agent.agents: one entry {name, token or existingSecret} per agent" -}}
{{- end -}}
{{- range .Values.agent.agents -}}
{{- if not (or .token .existingSecret) -}}{{- fail (printf "agent.agents[%s] needs token or existingSecret" .name) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Agents: what every agent pod shares. The pod spec below "containers:" is
completed by the DaemonSet and Deployment templates.
*/}}

{{/* Environment of an agent, except its name and token file. */}}
{{- define "certops.agentEnv" -}}
- name: CERTOPS_AGENT_SERVER
  value: {{ include "certops.serverURL" . | quote }}
{{- if and (not .Values.agent.server) (not .Values.tls.enabled) }}
{{- /* tls.enabled=false: the in-cluster Service is plain HTTP, allowed explicitly, as the agent refuses http:// off loopback otherwise. */}}
- name: CERTOPS_AGENT_INSECURE_PLAINTEXT
  value: "true"
{{- end }}
{{- /* A subdirectory the agent creates (and owns) in the mounted volume: it enforces 0700. */}}
- name: CERTOPS_AGENT_STATE_DIR
  value: /var/lib/certops-agent/state
- name: CERTOPS_AGENT_INTERVAL
  value: {{ .Values.agent.interval | quote }}
- name: CERTOPS_AGENT_LOG_FORMAT
  value: {{ .Values.agent.logFormat | quote }}
- name: CERTOPS_AGENT_LOG_LEVEL
  value: {{ .Values.agent.logLevel | quote }}
{{- if or .Values.agent.caBundle (include "certops.agentChartCA" .) }}
- name: CERTOPS_AGENT_CA_FILE
  value: /etc/certops-agent/ca/ca.crt
{{- end }}
{{- if .Values.agent.policy }}
- name: CERTOPS_AGENT_POLICY_FILE
  value: /etc/certops-agent/policy/policy.yaml
{{- end }}
{{- $targets := list }}
{{- range .Values.agent.hostPaths }}{{ $targets = append $targets .path }}{{ end }}
{{- range .Values.agent.volumes }}{{ $targets = append $targets .mountPath }}{{ end }}
{{- if $targets }}
{{- /* The agent writes only under its deploy targets. */}}
- name: CERTOPS_AGENT_ALLOW_DIRS
  value: {{ join "," $targets | quote }}
{{- end }}
{{- end -}}

{{/* Volume mounts of an agent: token, state, CA and the deploy targets. */}}
{{- define "certops.agentVolumeMounts" -}}
- name: token
  mountPath: /etc/certops-agent/tokens
  readOnly: true
- name: state
  mountPath: /var/lib/certops-agent
- name: tmp
  mountPath: /tmp
{{- if or .Values.agent.caBundle (include "certops.agentChartCA" .) }}
- name: ca
  mountPath: /etc/certops-agent/ca
  readOnly: true
{{- end }}
{{- if .Values.agent.policy }}
- name: policy
  mountPath: /etc/certops-agent/policy
  readOnly: true
{{- end }}
{{- range .Values.agent.hostPaths }}
- name: host-{{ .name }}
  mountPath: {{ .path }}
{{- end }}
{{- range .Values.agent.volumes }}
- name: target-{{ .name }}
  mountPath: {{ .mountPath }}
{{- end }}
{{- end -}}

{{/* Volumes of an agent except token and state. */}}
{{- define "certops.agentVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 16Mi
{{- if .Values.agent.caBundle }}
- name: ca
  configMap:
    name: {{ include "certops.componentName" (list . "agent-ca") }}
{{- else if include "certops.agentChartCA" . }}
{{- /* Only the CA of the reconciler's TLS Secret, never its key. */}}
- name: ca
  secret:
    secretName: {{ include "certops.tlsSecretName" . }}
    defaultMode: 0444
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- if .Values.agent.policy }}
- name: policy
  configMap:
    name: {{ include "certops.componentName" (list . "agent-policy") }}
{{- end }}
{{- range .Values.agent.hostPaths }}
- name: host-{{ .name }}
  hostPath:
    path: {{ .path }}
    type: {{ default "DirectoryOrCreate" .type }}
{{- end }}
{{- range .Values.agent.volumes }}
- name: target-{{ .name }}
  {{- toYaml .volume | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "users.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or the release name when it already holds the
chart name. Knative appends revision suffixes ("-00001") and the migration
resources add "-migrate", so keep room: 49 characters.
*/}}
{{- define "users.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 49 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 49 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 49 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "users.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "users.selectorLabels" -}}
app.kubernetes.io/name: {{ include "users.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "users.labels" -}}
helm.sh/chart: {{ include "users.chart" . }}
{{ include "users.selectorLabels" . }}
app.kubernetes.io/version: {{ include "users.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "users.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
Image reference; a digest wins over the tag.
*/}}
{{- define "users.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "users.imageTag" .) }}
{{- end }}
{{- end }}

{{- define "users.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "users.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The migration Job runs as a pre-install hook, before the ordinary
ServiceAccount exists, so it gets its own hook ServiceAccount when the chart
creates accounts, and the named existing one otherwise.
*/}}
{{- define "users.migrateServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- printf "%s-migrate" (include "users.fullname" .) }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Secret holding the database password for the web pods.
*/}}
{{- define "users.secretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- printf "%s-db" (include "users.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Secret for the migration hook: the existing one, or a hook copy created
before the Job (the ordinary Secret does not exist yet on install).
*/}}
{{- define "users.migrateSecretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- printf "%s-migrate" (include "users.fullname" .) }}
{{- end }}
{{- end }}

{{- define "users.secretKey" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecretKey }}
{{- else -}}
password
{{- end }}
{{- end }}

{{/*
Where the password file is mounted; POSTGRES_PASSWORD_FILE points at it, so
the password is never an environment value.
*/}}
{{- define "users.passwordDir" -}}/var/run/secrets/users/postgres{{- end }}

{{/*
The pod volume holding the password. Mode 0444: Knative allows no pod-level
fsGroup, and the image runs as its own uid (users.uid), not as the file's owner.
Args: dict "root" $ "secretName" name.
*/}}
{{- define "users.passwordVolume" -}}
- name: db-password
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0444
    items:
      - key: {{ include "users.secretKey" .root }}
        path: password
{{- end }}

{{/*
Container environment, the same for every container that runs the binary.
PORT is never set: Knative reserves it and sets it itself.
Args: dict "root" $ "drainDelaySeconds" n.
*/}}
{{- define "users.env" -}}
{{- $v := .root.Values -}}
- name: POSTGRES_HOST
  value: {{ $v.database.host | quote }}
- name: POSTGRES_PORT
  value: {{ $v.database.port | quote }}
- name: POSTGRES_DATABASE
  value: {{ $v.database.name | quote }}
- name: POSTGRES_USERNAME
  value: {{ $v.database.user | quote }}
- name: POSTGRES_PASSWORD_FILE
  value: {{ include "users.passwordDir" .root }}/password
- name: POSTGRES_SSLMODE
  value: {{ $v.database.sslmode | quote }}
- name: POSTGRES_MAX_CONNS
  value: {{ get . "maxConns" | default $v.database.maxConns | quote }}
{{- with $v.database.migrateHost }}
- name: POSTGRES_MIGRATE_HOST
  value: {{ . | quote }}
{{- end }}
{{- with $v.database.migratePort }}
- name: POSTGRES_MIGRATE_PORT
  value: {{ . | quote }}
{{- end }}
{{- if $v.database.pooler.enabled }}
- name: POSTGRES_PREPARED_STATEMENTS
  value: "false"
{{- end }}
- name: POSTGRES_DIAL_TIMEOUT
  value: {{ $v.database.dialTimeout | quote }}
- name: POSTGRES_QUERY_TIMEOUT
  value: {{ $v.database.queryTimeout | quote }}
- name: LOG_LEVEL
  value: {{ $v.app.logLevel | quote }}
- name: REQUEST_TIMEOUT
  value: {{ $v.app.requestTimeout | quote }}
- name: SHUTDOWN_TIMEOUT
  value: "{{ $v.app.shutdownTimeoutSeconds }}s"
- name: SHUTDOWN_DRAIN_DELAY
  value: "{{ .drainDelaySeconds }}s"
- name: MIGRATE_TIMEOUT
  value: "{{ $v.migrations.timeoutSeconds }}s"
{{- end }}

{{/*
Telemetry environment of the web containers only (the Job and the test Pod
export nothing). Every variable is set only when its value is not empty, so
the binary's defaults stay the defaults. METRICS_ADDR only in plain mode:
Knative allows one container port, so /metrics shares it there.
Args: dict "root" $ "metricsPort" n (0: none).
*/}}
{{- define "users.telemetryEnv" -}}
{{- $v := .root.Values -}}
{{- $o := $v.otel -}}
{{- if .metricsPort }}
- name: METRICS_ADDR
  value: ":{{ .metricsPort }}"
{{- end }}
{{- with $v.app.debugAddr }}
- name: DEBUG_ADDR
  value: {{ . | quote }}
{{- end }}
{{- if $o.sdkDisabled }}
- name: OTEL_SDK_DISABLED
  value: "true"
{{- end }}
{{- $vars := dict
  "OTEL_SERVICE_NAME" $o.serviceName
  "OTEL_EXPORTER_OTLP_ENDPOINT" $o.endpoint
  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" $o.tracesEndpoint
  "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" $o.metricsEndpoint
  "OTEL_TRACES_EXPORTER" $o.tracesExporter
  "OTEL_METRICS_EXPORTER" $o.metricsExporter
  "OTEL_TRACES_SAMPLER" $o.sampler
  "OTEL_TRACES_SAMPLER_ARG" (toString $o.samplerArg) }}
{{- range $name, $value := $vars }}
{{- if $value }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- /* The namespace is known here; the pod name would need the downward
  API (valueFrom), which the chart does not use for the binary's variables. */}}
{{- $attrs := merge (deepCopy $o.resourceAttributes) (dict "k8s.namespace.name" .root.Release.Namespace) }}
{{- $pairs := list }}
{{- range $k, $val := $attrs }}
{{- $pairs = append $pairs (printf "%s=%s" $k (toString $val)) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $pairs | quote }}
{{- end }}

{{/*
The port that serves /metrics in plain mode: 0 (the API port) or
plain.metrics.port; Knative mode always 0.
*/}}
{{- define "users.metricsPort" -}}
{{- if .Values.knative.enabled }}0{{ else }}{{ .Values.plain.metrics.port | int }}{{ end }}
{{- end }}

{{/*
Labels on the Prometheus Operator objects: the chart's, then
monitoring.labels (which an operator's selector usually matches).
*/}}
{{- define "users.monitoringLabels" -}}
{{ include "users.labels" . }}
app.kubernetes.io/component: web
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
What the image fixes, in one place: the uid it runs as (the Dockerfile's
USER), the port `users serve` listens on (its PORT default, which Knative
also sets) and the probe paths the binary serves.
*/}}
{{- define "users.uid" -}}65532{{- end }}
{{- define "users.port" -}}8080{{- end }}
{{- define "users.readinessPath" -}}/-/ready{{- end }}
{{- define "users.metricsPath" -}}/metrics{{- end }}
{{- define "users.livenessPath" -}}/-/healthy{{- end }}

{{/*
The password file's mount, in every container that runs the binary (the pod
needs the volume from users.passwordVolume).
*/}}
{{- define "users.passwordMount" -}}
- name: db-password
  mountPath: {{ include "users.passwordDir" . }}
  readOnly: true
{{- end }}

{{/*
Pod-level securityContext of the Deployment, the migration Job and the test
Pod: the image's uid, gid and fsGroup, then .Values.podSecurityContext on top.
(Knative disables this field by default: the Knative Service carries only the
container-level one.)
*/}}
{{- define "users.podSecurityContext" -}}
{{- $uid := include "users.uid" . | int -}}
{{- toYaml (merge (deepCopy .Values.podSecurityContext) (dict "runAsUser" $uid "runAsGroup" $uid "fsGroup" $uid)) }}
{{- end }}

{{/*
Container-level securityContext: the image's uid, nothing writable, no
privileges. Knative allows all of it at container level.
*/}}
{{- define "users.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ include "users.uid" . }}
runAsGroup: {{ include "users.uid" . }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Annotations that roll the pods when the chart-owned Secret changes: the
binary reads the password file once, at start.
*/}}
{{- define "users.podAnnotations" -}}
{{- if not .Values.database.existingSecret }}
checksum/db-password: {{ .Values.database.password | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Address of the service inside the cluster. Knative creates a Kubernetes
Service named after the Knative Service that routes to the cluster-local
gateway, so both modes answer at <name>.<namespace>.svc.
*/}}
{{- define "users.clusterURL" -}}
{{- if .Values.knative.enabled }}
{{- printf "http://%s.%s.svc.cluster.local" (include "users.fullname" .) .Release.Namespace }}
{{- else }}
{{- printf "http://%s.%s.svc.cluster.local:%v" (include "users.fullname" .) .Release.Namespace .Values.plain.service.port }}
{{- end }}
{{- end }}

{{/*
Checks across values that the schema cannot express.
*/}}
{{- define "users.validate" -}}
{{- $k := .Values.knative }}
{{- if and (ne (int $k.maxScale) 0) (lt (int $k.maxScale) (int $k.minScale)) }}
{{- fail (printf "knative.maxScale (%v) must be 0 (unlimited) or at least knative.minScale (%v)" $k.maxScale $k.minScale) }}
{{- end }}
{{- $a := .Values.plain.autoscaling }}
{{- if lt (int $a.maxReplicas) (int $a.minReplicas) }}
{{- fail (printf "plain.autoscaling.maxReplicas (%v) must be at least minReplicas (%v)" $a.maxReplicas $a.minReplicas) }}
{{- end }}
{{- $m := .Values.migrations }}
{{- if and $m.enabled (le (int $m.activeDeadlineSeconds) (int $m.timeoutSeconds)) }}
{{- fail (printf "migrations.activeDeadlineSeconds (%v) must exceed migrations.timeoutSeconds (%v)" $m.activeDeadlineSeconds $m.timeoutSeconds) }}
{{- end }}
{{- if eq (int .Values.plain.metrics.port) (include "users.port" . | int) }}
{{- fail (printf "plain.metrics.port (%v) must not be the API port; 0 serves /metrics there" .Values.plain.metrics.port) }}
{{- end }}
{{- include "users.connectionBudget" . }}
{{- end }}

{{/*
Connections the migration Job opens: one holds the lock, one migrates
(users.env sets its pool to this).
*/}}
{{- define "users.migrateConns" -}}2{{- end }}

{{/*
The connection budget: the most pods this release can run at once, each
with a pool of database.maxConns, plus the migration Job, must fit what
PostgreSQL (or, with a pooler, the pooler) accepts. During a rollout the
old pods run beside the new: a Knative revision at up to maxScale beside
the next one's minScale (its initial scale), a Deployment's replicas (or
the HPA's maximum) plus its maxSurge of 1.
*/}}
{{- define "users.connectionBudget" -}}
{{- $d := .Values.database }}
{{- $k := .Values.knative }}
{{- $job := 0 }}
{{- if .Values.migrations.enabled }}{{- $job = include "users.migrateConns" . | int }}{{- end }}
{{- $ways := "lower database.maxConns" }}
{{- $pods := 0 }}
{{- $why := "" }}
{{- if $k.enabled }}
{{- if eq (int $k.maxScale) 0 }}
{{- fail (printf "database connection budget: knative.maxScale 0 lets Knative start any number of pods, each with database.maxConns %v connections, and database.maxConnections is %v: set knative.maxScale, or put a pooler in transaction mode in front and its limit in database.pooler.maxClientConnections (README: Scaling)" $d.maxConns $d.maxConnections) }}
{{- end }}
{{- $pods = add $k.maxScale $k.minScale }}
{{- $why = printf "knative.maxScale %v, plus knative.minScale %v of the next revision during a rollout" $k.maxScale $k.minScale }}
{{- $ways = "lower database.maxConns or knative.maxScale" }}
{{- else if .Values.plain.autoscaling.enabled }}
{{- $pods = add .Values.plain.autoscaling.maxReplicas 1 }}
{{- $why = printf "plain.autoscaling.maxReplicas %v, plus 1 surge pod during a rollout" .Values.plain.autoscaling.maxReplicas }}
{{- $ways = "lower database.maxConns or plain.autoscaling.maxReplicas" }}
{{- else }}
{{- $pods = add .Values.plain.replicas 1 }}
{{- $why = printf "plain.replicas %v, plus 1 surge pod during a rollout" .Values.plain.replicas }}
{{- $ways = "lower database.maxConns or plain.replicas" }}
{{- end }}
{{- $web := mul $pods $d.maxConns }}
{{- if $d.pooler.enabled }}
{{- if not $d.migrateHost }}
{{- fail "database.pooler.enabled: set database.migrateHost (and migratePort) to PostgreSQL itself; migrations hold a session advisory lock, which a pooler in transaction mode cannot keep, and `users migrate` refuses to run through one" }}
{{- end }}
{{- if gt (int $web) (int $d.pooler.maxClientConnections) }}
{{- fail (printf "database connection budget: up to %v pods (%s) × database.maxConns %v = %v client connections, more than the pooler accepts (database.pooler.maxClientConnections %v): %s, or raise the pooler's max_client_conn" $pods $why $d.maxConns $web $d.pooler.maxClientConnections $ways) }}
{{- end }}
{{- if gt (int $job) (int $d.maxConnections) }}
{{- fail (printf "database connection budget: the migration Job needs %v connections to PostgreSQL, more than database.maxConnections %v" $job $d.maxConnections) }}
{{- end }}
{{- else if gt (int (add $web $job)) (int $d.maxConnections) }}
{{- fail (printf "database connection budget: up to %v pods (%s) × database.maxConns %v + %v for the migration Job = %v connections, more than database.maxConnections %v: %s, or put a pooler in transaction mode in front (database.pooler.enabled; README: Scaling)" $pods $why $d.maxConns $job (add $web $job) $d.maxConnections $ways) }}
{{- end }}
{{- end }}

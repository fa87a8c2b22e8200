{{/* The chart's name, at most 63 characters. */}}
{{- define "oomguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: objects are named after it. */}}
{{- define "oomguard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "oomguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oomguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "oomguard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "oomguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: node-guardian
{{- end }}

{{- define "oomguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "oomguard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "oomguard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The daemon's metrics listener: the pod's port, or loopback behind the kube-rbac-proxy sidecar. */}}
{{- define "oomguard.metricsListen" -}}
{{- if .Values.metricsProxy.enabled }}
{{- printf "127.0.0.1:%d" (int .Values.metricsProxy.upstreamPort) }}
{{- else }}
{{- printf "0.0.0.0:%d" (int .Values.metrics.port) }}
{{- end }}
{{- end }}

{{- define "oomguard.proxyImage" -}}
{{- with .Values.metricsProxy.image }}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}
{{- end }}

{{/* The health listener: loopback of the pod's own network namespace (the pod has no hostNetwork). */}}
{{- define "oomguard.healthListen" -}}
{{- printf "127.0.0.1:%d" (int .Values.health.port) }}
{{- end }}

{{/* Where docker/Dockerfile installs the binary (its ENTRYPOINT); the exec probes run it. */}}
{{- define "oomguard.binary" -}}
/usr/bin/oomguard
{{- end }}

{{/*
One exec probe: `oomguard health` against the loopback health listener. dict "probe" (livenessProbe or
readinessProbe values) "name" (for messages) "root" (.). The probe's timeoutSeconds must outlast the
subcommand's own --timeout-ms, or kubelet would kill the probe before it can report.
*/}}
{{- define "oomguard.execProbe" -}}
{{- $values := .root.Values }}
{{- if le (mul (int .probe.timeoutSeconds) 1000) (int $values.health.requestTimeoutMs) }}
{{- fail (printf "%s.timeoutSeconds (%d s) must be longer than health.requestTimeoutMs (%d ms): kubelet would end the probe before `oomguard health` times out" .name (int .probe.timeoutSeconds) (int $values.health.requestTimeoutMs)) }}
{{- end }}
exec:
  command:
    - {{ include "oomguard.binary" .root }}
    - health
    - --address
    - {{ include "oomguard.healthListen" .root | quote }}
    - --timeout-ms
    - {{ $values.health.requestTimeoutMs | int | toString | quote }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
periodSeconds: {{ .probe.periodSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end }}

{{/*
The daemon's config.json: configJson verbatim, or `config` with metrics.listen from metrics.port,
metrics.health_listen from health.port (when health.enabled), read_kmsg off when /dev/kmsg is not mounted, and the kubernetes section from `kubernetes` and
`workloadAnnotations` (the node's name comes from $NODE_NAME, the downward API).
*/}}
{{- define "oomguard.configJson" -}}
{{- if .Values.configJson }}
{{- .Values.configJson }}
{{- else }}
{{- $config := deepCopy .Values.config }}
{{- $metrics := get $config "metrics" | default dict }}
{{- $_ := set $metrics "listen" (include "oomguard.metricsListen" .) }}
{{- if .Values.health.enabled }}
{{- $_ := set $metrics "health_listen" (include "oomguard.healthListen" .) }}
{{- end }}
{{- $_ := set $config "metrics" $metrics }}
{{- if not .Values.kmsg.enabled }}
{{- $_ := set $config "read_kmsg" false }}
{{- end }}
{{- if .Values.history.enabled }}
{{- $_ := set $config "history" (dict "dir" "/var/lib/oomguard" "max_kib" (int .Values.history.maxKib)) }}
{{- else }}
{{- $_ := set $config "history" nil }}
{{- end }}
{{- $kubernetes := dict "enabled" .Values.kubernetes.enabled "events" .Values.kubernetes.events "annotations" .Values.kubernetes.annotations "protected_namespaces" .Values.workloadAnnotations.protectedNamespaces "tenant_max_sigterm_grace_seconds" (int .Values.workloadAnnotations.tenantMaxSigtermGraceSeconds) }}
{{- $_ := set $config "kubernetes" (merge (get $config "kubernetes" | default dict) $kubernetes) }}
{{- toPrettyJson $config }}
{{- end }}
{{- end }}

{{/*
The rendered config as an object, for the templates that depend on it (the /proc/sys mounts, the AppArmor
default). configJson must be JSON, and with health.enabled its metrics.health_listen must be the
listener the probes ask.
*/}}
{{- define "oomguard.config" -}}
{{- $config := include "oomguard.configJson" . | fromJson }}
{{- if hasKey $config "Error" }}
{{- fail (printf "configJson is not a JSON object: %s" $config.Error) }}
{{- end }}
{{- if .Values.health.enabled }}
{{- $listen := (get $config "metrics" | default dict).health_listen | default "" }}
{{- if ne $listen (include "oomguard.healthListen" .) }}
{{- fail (printf "%s: metrics.health_listen is %q, but the probes ask %s (health.port); set it, or health.enabled=false" (ternary "configJson" "config" (ne .Values.configJson "")) $listen (include "oomguard.healthListen" .)) }}
{{- end }}
{{- end }}
{{- toJson $config }}
{{- end }}

{{/*
The sysctls the daemon will write, as a JSON list of names: the config's sysctls.values, in mode act and
without --dry-run (docs/config.md: observe mode and dry runs only compare). Each gets its own writable
file mount; the rest of /proc/sys stays read-only.
*/}}
{{- define "oomguard.sysctlWrites" -}}
{{- $config := include "oomguard.config" . | fromJson }}
{{- $names := list }}
{{- if and (eq (toString $config.mode) "act") (not .Values.dryRun) }}
{{- $names = keys ((get $config "sysctls" | default dict).values | default dict) | sortAlpha }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/*
The AppArmor profile type: securityContext.appArmorProfile.type, or when that is "" RuntimeDefault in
observe mode and Unconfined in mode act (and for a privileged container, which runs unconfined anyway). The runtime's default profile lets a container signal only
processes under that same profile, so in mode act the node's own services and privileged pods could not
be killed (docs/kubernetes-security.md).
*/}}
{{- define "oomguard.appArmorType" -}}
{{- $type := .Values.securityContext.appArmorProfile.type }}
{{- if not $type }}
{{- $config := include "oomguard.config" . | fromJson }}
{{- $type = or .Values.securityContext.privileged (eq (toString $config.mode) "act") | ternary "Unconfined" "RuntimeDefault" }}
{{- end }}
{{- $type }}
{{- end }}

{{/* The same profile in the annotation's spelling, for Kubernetes before 1.30. */}}
{{- define "oomguard.appArmorAnnotation" -}}
{{- $type := include "oomguard.appArmorType" . }}
{{- if eq $type "Localhost" }}
{{- printf "localhost/%s" .Values.securityContext.appArmorProfile.localhostProfile }}
{{- else }}
{{- get (dict "RuntimeDefault" "runtime/default" "Unconfined" "unconfined") $type }}
{{- end }}
{{- end }}

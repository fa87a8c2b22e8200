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

{{- define "oomguard.metricsListen" -}}
{{- printf "0.0.0.0:%d" (int .Values.metrics.port) }}
{{- end }}

{{/*
The daemon's config.json: configJson verbatim, or `config` with metrics.listen from metrics.port,
read_kmsg off when /dev/kmsg is not mounted, and the kubernetes section from `kubernetes` and
`workloadAnnotations` (the node's name comes from $NODE_NAME, the downward API).
*/}}
{{- define "oomguard.configJson" -}}
{{- if .Values.configJson }}
{{- .Values.configJson }}
{{- else }}
{{- $config := deepCopy .Values.config }}
{{- $metrics := get $config "metrics" | default dict }}
{{- $_ := set $metrics "listen" (include "oomguard.metricsListen" .) }}
{{- $_ := set $config "metrics" $metrics }}
{{- if not .Values.kmsg.enabled }}
{{- $_ := set $config "read_kmsg" false }}
{{- end }}
{{- $kubernetes := dict "enabled" .Values.kubernetes.enabled "events" .Values.kubernetes.events "annotations" .Values.kubernetes.annotations "protected_namespaces" .Values.workloadAnnotations.protectedNamespaces "tenant_max_sigterm_grace_seconds" (int .Values.workloadAnnotations.tenantMaxSigtermGraceSeconds) }}
{{- $_ := set $config "kubernetes" (merge (get $config "kubernetes" | default dict) $kubernetes) }}
{{- toPrettyJson $config }}
{{- end }}
{{- end }}

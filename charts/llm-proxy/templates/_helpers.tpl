{{/* Names, labels and secret resolution shared by every template of the chart. */}}

{{- define "llm-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-proxy.fullname" -}}
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

{{- define "llm-proxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-proxy.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* Labels common to every object. */}}
{{- define "llm-proxy.labels" -}}
helm.sh/chart: {{ include "llm-proxy.chart" . }}
app.kubernetes.io/name: {{ include "llm-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels of one component. The component label keeps the selectors of the proxy, the dispatcher and
the database disjoint (upstream's database pods matched the proxy Service).
Call with (dict "root" $ "component" "proxy").
*/}}
{{- define "llm-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-proxy.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "llm-proxy.componentLabels" -}}
{{ include "llm-proxy.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "llm-proxy.eventBus" -}}
{{- .Values.env.LLM_PROXY_EVENT_BUS | default "in-memory" }}
{{- end }}

{{- define "llm-proxy.dbDriver" -}}
{{- .Values.env.DB_DRIVER | default "sqlite" | lower }}
{{- end }}

{{/*
Secret references: "<name>/<key>" of the Secret holding a value, or "" when none is configured.
A chart-managed value (secrets.create and a non-empty secrets.data.X) wins over existingSecret.
*/}}
{{- define "llm-proxy.managementTokenSecret" -}}
{{- if and .Values.secrets.create .Values.secrets.data.managementToken }}
{{- printf "%s/MANAGEMENT_TOKEN" (include "llm-proxy.fullname" .) }}
{{- else if .Values.secrets.managementToken.existingSecret.name }}
{{- printf "%s/%s" .Values.secrets.managementToken.existingSecret.name (.Values.secrets.managementToken.existingSecret.key | default "MANAGEMENT_TOKEN") }}
{{- end }}
{{- end }}

{{- define "llm-proxy.databaseUrlSecret" -}}
{{- if and .Values.secrets.create .Values.secrets.data.databaseUrl }}
{{- printf "%s/DATABASE_URL" (include "llm-proxy.fullname" .) }}
{{- else if .Values.secrets.databaseUrl.existingSecret.name }}
{{- printf "%s/%s" .Values.secrets.databaseUrl.existingSecret.name (.Values.secrets.databaseUrl.existingSecret.key | default "DATABASE_URL") }}
{{- end }}
{{- end }}

{{- define "llm-proxy.encryptionKeySecret" -}}
{{- if and .Values.secrets.create .Values.secrets.data.encryptionKey }}
{{- printf "%s/ENCRYPTION_KEY" (include "llm-proxy.fullname" .) }}
{{- else if .Values.secrets.encryptionKey.existingSecret.name }}
{{- printf "%s/%s" .Values.secrets.encryptionKey.existingSecret.name (.Values.secrets.encryptionKey.existingSecret.key | default "ENCRYPTION_KEY") }}
{{- end }}
{{- end }}

{{- define "llm-proxy.postgresqlPasswordSecret" -}}
{{- $pg := .Values.postgresql }}
{{- if $pg.auth.existingSecret }}
{{- printf "%s/%s" $pg.auth.existingSecret ($pg.auth.secretKeys.userPasswordKey | default "password") }}
{{- else }}
{{- printf "%s-postgresql/%s" (include "llm-proxy.fullname" .) ($pg.auth.secretKeys.userPasswordKey | default "password") }}
{{- end }}
{{- end }}

{{- define "llm-proxy.dispatcherApiKeySecret" -}}
{{- $key := .Values.dispatcher.apiKey }}
{{- if $key.existingSecret.name }}
{{- printf "%s/%s" $key.existingSecret.name ($key.existingSecret.key | default "DISPATCHER_API_KEY") }}
{{- else if $key.value }}
{{- printf "%s-dispatcher/%s" (include "llm-proxy.fullname" .) ($key.existingSecret.key | default "DISPATCHER_API_KEY") }}
{{- end }}
{{- end }}

{{/* An env entry read from a "<name>/<key>" Secret reference. Call with (dict "name" "X" "ref" "secret/key"). */}}
{{- define "llm-proxy.secretEnv" -}}
{{- $parts := splitn "/" 2 .ref -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ $parts._0 | quote }}
      key: {{ $parts._1 | quote }}
{{- end }}

{{/* REDIS_ADDR, REDIS_DB and REDIS_PASSWORD, shared by the proxy and the dispatcher. */}}
{{- define "llm-proxy.redisEnv" -}}
{{- $redis := .Values.redis.external }}
{{- if $redis.addr }}
- name: REDIS_ADDR
  value: {{ $redis.addr | quote }}
- name: REDIS_DB
  value: {{ $redis.db | toString | quote }}
{{- if $redis.password.existingSecret.name }}
{{ include "llm-proxy.secretEnv" (dict "name" "REDIS_PASSWORD" "ref" (printf "%s/%s" $redis.password.existingSecret.name ($redis.password.existingSecret.key | default "REDIS_PASSWORD"))) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "llm-proxy.dispatcherEndpoint" -}}
{{- $d := .Values.dispatcher }}
{{- if $d.endpoint }}
{{- $d.endpoint }}
{{- else if eq $d.service "file" }}
{{- "/app/data/events.jsonl" }}
{{- else if eq $d.service "lunary" }}
{{- "https://api.lunary.ai/v1/runs/ingest" }}
{{- else if eq $d.service "helicone" }}
{{- "https://api.worker.helicone.ai/custom/v1/log" }}
{{- end }}
{{- end }}

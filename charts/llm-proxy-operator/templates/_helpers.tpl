{{/* Names, labels and shared fragments of the llm-proxy-operator chart. */}}

{{- define "llm-proxy-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-proxy-operator.fullname" -}}
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

{{- define "llm-proxy-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-proxy-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-proxy-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "llm-proxy-operator.labels" -}}
helm.sh/chart: {{ include "llm-proxy-operator.chart" . }}
{{ include "llm-proxy-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "llm-proxy-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-proxy-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when the operator runs with leader election. */}}
{{- define "llm-proxy-operator.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
RBAC rules for the namespaces the operator watches (every namespace through the ClusterRole, or one Role per
entry of watchNamespaces). Keep in sync with rbac-rules.json (scripts/test-charts.sh compares them).
*/}}
{{- define "llm-proxy-operator.watchedNamespaceRules" -}}
# Watch LlmProxy objects: the controller's primary resource.
- apiGroups: ["llm-proxy.io"]
  resources: ["llmproxies"]
  verbs: ["get", "list", "watch"]
# Report observedGeneration, conditions and replicas through the status subresource (server-side apply = patch).
- apiGroups: ["llm-proxy.io"]
  resources: ["llmproxies/status"]
  verbs: ["get", "patch"]
# Children of an LlmProxy: proxy and dispatcher Deployments, the development PostgreSQL StatefulSet.
# Server-side apply is a patch (creating when absent); orphan cleanup lists by label and deletes.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Children: Services, owned Secrets (management token, database password, rendered values), the providers
# and dashboard ConfigMaps, and the PVCs of the SQLite data and the dispatcher's file sink. Secrets are also
# read to hash referenced Secrets into the pod template, so a changed Secret rolls the pods.
- apiGroups: [""]
  resources: ["services", "secrets", "configmaps", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Child HorizontalPodAutoscaler when spec.autoscaling.enabled.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Child Ingress when spec.ingress.enabled.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Child ServiceMonitor when spec.metrics.serviceMonitor.enabled and the Prometheus Operator CRD is served (the
# operator finds it through API discovery, which needs no rule); watched (metadata only) while the CRD is served.
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Normal and Warning Events on LlmProxy objects (invalid spec, rollouts, API errors).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Leader election, only in the operator's own namespace. */}}
{{- define "llm-proxy-operator.leaderElectionRules" -}}
# Leader election: one Lease, read, acquired (create), renewed and taken over (update) by the replicas.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end }}

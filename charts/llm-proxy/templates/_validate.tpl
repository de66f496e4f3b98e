{{/*
Configuration checks. Each `fail` message is the upstream chart's, verbatim, so users and the operator
(which enforces the same rules) report the same text.
*/}}

{{- define "llm-proxy.validatePostgresConfig" -}}
{{- $driver := include "llm-proxy.dbDriver" . }}
{{- $inCluster := .Values.postgresql.enabled }}
{{- $external := or (and .Values.secrets.create .Values.secrets.data.databaseUrl) .Values.secrets.databaseUrl.existingSecret.name }}
{{- if eq $driver "postgres" }}
{{- if and $inCluster $external }}
{{- fail "Configuration error: Cannot use both in-cluster PostgreSQL (postgresql.enabled=true) and external PostgreSQL (secrets.databaseUrl) at the same time. Please choose one approach." }}
{{- end }}
{{- if and (not $inCluster) (not $external) }}
{{- fail "Configuration error: DB_DRIVER is set to 'postgres' but no database configuration found. Please either:\n  1. Enable in-cluster PostgreSQL with postgresql.enabled=true (development/testing only)\n  2. Configure external PostgreSQL with secrets.databaseUrl.existingSecret.name (recommended for production)\n  3. Change DB_DRIVER to 'sqlite' for single-instance deployments" }}
{{- end }}
{{- if and $inCluster (not .Values.postgresql.auth.password) (not .Values.postgresql.auth.existingSecret) }}
{{- fail "Configuration error: postgresql.enabled=true but no password configured. Please set postgresql.auth.password or postgresql.auth.existingSecret" }}
{{- end }}
{{- end }}
{{- if and $inCluster (ne $driver "postgres") }}
{{- fail (printf "Configuration error: postgresql.enabled=true but DB_DRIVER is set to '%s'. When using in-cluster PostgreSQL, DB_DRIVER must be set to 'postgres'." $driver) }}
{{- end }}
{{- end }}

{{- define "llm-proxy.validateRedisConfig" -}}
{{- $bus := include "llm-proxy.eventBus" . }}
{{- if regexMatch "@|://" (toString .Values.redis.external.addr) }}
{{- fail "Configuration error: redis.external.addr must be host:port. It is rendered as a plain environment value, so a password must not be in it: put it in a Secret named by redis.external.password.existingSecret." }}
{{- end }}
{{- if and (has $bus (list "redis" "redis-streams")) (not .Values.redis.external.addr) }}
{{- fail (printf "Configuration error: LLM_PROXY_EVENT_BUS is set to '%s' but redis.external.addr is empty. Please set redis.external.addr to your Redis server address (e.g., 'redis.example.com:6379') or change LLM_PROXY_EVENT_BUS to 'in-memory' for single-instance deployments." $bus) }}
{{- end }}
{{- end }}

{{- define "llm-proxy.validateDispatcherConfig" -}}
{{- $bus := include "llm-proxy.eventBus" . }}
{{- $d := .Values.dispatcher }}
{{- if not (has $bus (list "redis" "redis-streams")) }}
{{- fail (printf "Configuration error: Dispatcher requires LLM_PROXY_EVENT_BUS to be 'redis' or 'redis-streams', but it is set to '%s'. Set LLM_PROXY_EVENT_BUS to a supported durable event bus type and configure redis.external.addr." $bus) }}
{{- end }}
{{- if not .Values.redis.external.addr }}
{{- fail (printf "Configuration error: Dispatcher is enabled with LLM_PROXY_EVENT_BUS='%s' but redis.external.addr is empty. Please set redis.external.addr to your Redis server address." $bus) }}
{{- end }}
{{- if not (has $d.service (list "file" "lunary" "helicone")) }}
{{- fail (printf "Configuration error: dispatcher.service is set to '%s'. Please set it to 'file', 'lunary' or 'helicone'." $d.service) }}
{{- end }}
{{- if and (ne $d.service "file") (not $d.apiKey.existingSecret.name) (not $d.apiKey.value) }}
{{- fail (printf "Configuration error: Dispatcher service '%s' requires an API key via existingSecret. Please set dispatcher.apiKey.existingSecret.name" $d.service) }}
{{- end }}
{{- end }}

{{- define "llm-proxy.validateAutoscalingConfig" -}}
{{- $a := .Values.autoscaling }}
{{- if and $a.enabled (not $a.targetCPUUtilizationPercentage) (not $a.targetMemoryUtilizationPercentage) }}
{{- fail "Configuration error: autoscaling.enabled is true but no target metrics are configured. Please set at least one of autoscaling.targetCPUUtilizationPercentage or autoscaling.targetMemoryUtilizationPercentage." }}
{{- end }}
{{- end }}

{{- define "llm-proxy.validateSqliteConfig" -}}
{{- $maxReplicas := .Values.replicaCount }}
{{- if .Values.autoscaling.enabled }}
{{- $maxReplicas = .Values.autoscaling.maxReplicas }}
{{- end }}
{{- if and (eq (include "llm-proxy.dbDriver" .) "sqlite") (gt (int $maxReplicas) 1) }}
{{- fail (printf "Configuration error: DB_DRIVER is 'sqlite' but the deployment can scale to %v replicas. SQLite is not supported for multi-pod deployments. Set env.DB_DRIVER to 'mysql' or 'postgres' and configure secrets.databaseUrl / mysql.enabled / postgresql.enabled." $maxReplicas) }}
{{- end }}
{{- end }}

{{- define "llm-proxy.validateEncryptionKeyConfig" -}}
{{- if and .Values.secrets.encryptionKey.required (not (include "llm-proxy.encryptionKeySecret" .)) }}
{{- fail "Configuration error: ENCRYPTION_KEY is required but not configured. Provide secrets.encryptionKey.existingSecret.name (recommended) or set secrets.create=true and secrets.data.encryptionKey (development only)." }}
{{- end }}
{{- end }}

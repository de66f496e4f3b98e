#!/usr/bin/env bash
# Renders charts/llm-proxy in every scenario of the upstream validation script (24 baseline + the relevant
# HEAD additions) and every install command of the seed chart README, and checks each outcome:
# expected successes must render (and satisfy their assertions), expected failures must fail with their message.
# Exit status 1 on any unexpected outcome.
#
# RENDER_DIR=<dir>: also write every successful render to <dir>/<NN>-<slug>.yaml (scripts/test-charts.sh
# validates those files against the Kubernetes schemas).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/tools.sh
source "$REPO_ROOT/scripts/tools.sh"
CHART="$REPO_ROOT/charts/llm-proxy"
RELEASE="test-release"
FULLNAME="$RELEASE-llm-proxy"

STDERR_FILE="$(mktemp)"
trap 'rm -f "$STDERR_FILE"' EXIT
passed=0
failed=0
scenario_number=0
rendered=""

pass() { passed=$((passed + 1)); echo "PASS $scenario_number $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $scenario_number $1: $2"; }

# expect_render SLUG [helm args...]: the chart must render; the output is kept in $rendered.
expect_render() {
    local slug="$1"; shift
    scenario_number=$((scenario_number + 1))
    if rendered="$("$HELM" template "$RELEASE" "$CHART" "$@" 2>"$STDERR_FILE")"; then
        if [[ -n "${RENDER_DIR:-}" ]]; then
            printf '%s\n' "$rendered" >"$RENDER_DIR/$(printf '%02d' "$scenario_number")-$slug.yaml"
        fi
        pass "$slug: renders"
        return 0
    fi
    fail "$slug" "unexpected render failure: $(cat "$STDERR_FILE")"
    rendered=""
    return 1
}

# expect_failure SLUG MESSAGE [helm args...]: the render must fail and stderr must contain MESSAGE.
expect_failure() {
    local slug="$1" message="$2"; shift 2
    scenario_number=$((scenario_number + 1))
    if "$HELM" template "$RELEASE" "$CHART" "$@" >/dev/null 2>"$STDERR_FILE"; then
        fail "$slug" "rendered, but should fail with: $message"
    elif grep -qF -- "$message" "$STDERR_FILE"; then
        pass "$slug (fails with the expected message)"
    else
        fail "$slug" "failed with an unexpected message: $(cat "$STDERR_FILE")"
    fi
}

# check SLUG DESCRIPTION PYTHON_EXPR: evaluates PYTHON_EXPR over the rendered documents of the last
# expect_render (`docs`: list of objects; `find(kind, name)`: one object or None; `env(obj)`: name -> entry
# of the first container's env; `text`: the raw YAML).
check() {
    local slug="$1" description="$2" expr="$3"
    if RENDERED="$rendered" "$PYTHON" - "$expr" <<'PY'
import os, sys, yaml
text = os.environ["RENDERED"]
docs = [d for d in yaml.safe_load_all(text) if d]
def find(kind, name=None):
    for d in docs:
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name):
            return d
    return None
def containers(obj):
    return obj["spec"]["template"]["spec"]["containers"]
def env(obj):
    return {e["name"]: e for e in containers(obj)[0].get("env", [])}
def env_names(obj):
    return [e["name"] for e in containers(obj)[0].get("env", [])]
sys.exit(0 if eval(sys.argv[1]) else 1)
PY
    then
        pass "$slug: $description"
    else
        fail "$slug" "$description"
    fi
}

# Shorthands for the seed README commands.
IMAGE=(--set image.repository=your-registry/llm-proxy --set image.tag=v1.0.0)
MGMT=(--set secrets.managementToken.existingSecret.name=llm-proxy-secrets)
EXT_PG=(--set secrets.databaseUrl.existingSecret.name=llm-proxy-db --set env.DB_DRIVER=postgres)
REDIS=(--set redis.external.addr=redis.example.com:6379 --set env.LLM_PROXY_EVENT_BUS=redis-streams)

echo "== upstream validation scenarios (spec 7.6) =="

scenario_number=$((scenario_number + 1))
if lint_out="$("$HELM" lint --strict "$CHART" 2>&1)"; then pass "helm-lint"; else fail "helm-lint" "$lint_out"; fi

if expect_render minimal-overrides --set image.repository=my-registry/llm-proxy --set image.tag=v9.9.9 --set image.pullPolicy=Always --set env.LOG_LEVEL=debug; then
    check minimal-overrides "image and LOG_LEVEL override applied" \
        "containers(find('Deployment', '$FULLNAME'))[0]['image'] == 'my-registry/llm-proxy:v9.9.9' and env(find('Deployment', '$FULLNAME'))['LOG_LEVEL']['value'] == 'debug'"
fi

if expect_render minimal-values; then
    check minimal-values "Deployment + Service only, no config emptyDir, no Secret" \
        "sorted(d['kind'] for d in docs) == ['Deployment', 'Service'] and all(v['name'] != 'config' for v in find('Deployment')['spec']['template']['spec']['volumes'])"
    check minimal-values "env literals sorted, no secret env without a Secret" \
        "env_names(find('Deployment')) == sorted(env_names(find('Deployment'))) and 'MANAGEMENT_TOKEN' not in env(find('Deployment'))"
    check minimal-values "no service account token, no Service-link env" \
        "find('Deployment')['spec']['template']['spec']['automountServiceAccountToken'] is False and find('Deployment')['spec']['template']['spec']['enableServiceLinks'] is False"
    check minimal-values "hardened security contexts" \
        "find('Deployment')['spec']['template']['spec']['securityContext']['runAsNonRoot'] and find('Deployment')['spec']['template']['spec']['securityContext']['seccompProfile']['type'] == 'RuntimeDefault' and containers(find('Deployment'))[0]['securityContext']['readOnlyRootFilesystem'] and containers(find('Deployment'))[0]['securityContext']['capabilities']['drop'] == ['ALL']"
fi

if expect_render complex --set replicaCount=3 --set service.type=NodePort --set service.port=9090 \
    --set env.DB_DRIVER=postgres --set secrets.databaseUrl.existingSecret.name=db-secret "${MGMT[@]}"; then
    check complex "3 replicas, NodePort 9090, DATABASE_URL and MANAGEMENT_TOKEN from Secrets" \
        "find('Deployment')['spec']['replicas'] == 3 and find('Service')['spec']['type'] == 'NodePort' and find('Service')['spec']['ports'][0]['port'] == 9090 and env(find('Deployment'))['DATABASE_URL']['valueFrom']['secretKeyRef'] == {'name': 'db-secret', 'key': 'DATABASE_URL'} and env(find('Deployment'))['MANAGEMENT_TOKEN']['valueFrom']['secretKeyRef']['name'] == 'llm-proxy-secrets'"
fi

if expect_render external-postgresql "${EXT_PG[@]}" "${MGMT[@]}"; then
    check external-postgresql "no in-cluster database, DATABASE_URL from the Secret" \
        "find('StatefulSet') is None and 'PGPASSWORD' not in env(find('Deployment')) and env(find('Deployment'))['DATABASE_URL']['valueFrom']['secretKeyRef']['name'] == 'llm-proxy-db'"
fi

if expect_render in-cluster-postgresql --set env.DB_DRIVER=postgres --set postgresql.enabled=true --set-string postgresql.auth.password=s3cret "${MGMT[@]}"; then
    check in-cluster-postgresql "StatefulSet with volumeClaimTemplate, Service, Secret" \
        "find('StatefulSet', '$FULLNAME-postgresql')['spec']['volumeClaimTemplates'][0]['spec']['resources']['requests']['storage'] == '8Gi' and find('Service', '$FULLNAME-postgresql') is not None and find('Secret', '$FULLNAME-postgresql')['stringData'] == {'password': 's3cret'}"
    check in-cluster-postgresql "PGPASSWORD then DATABASE_URL with \$(PGPASSWORD)" \
        "env_names(find('Deployment', '$FULLNAME')).index('PGPASSWORD') + 1 == env_names(find('Deployment', '$FULLNAME')).index('DATABASE_URL') and env(find('Deployment', '$FULLNAME'))['DATABASE_URL']['value'] == 'postgres://llmproxy:\$(PGPASSWORD)@$FULLNAME-postgresql:5432/llmproxy?sslmode=disable'"
    check in-cluster-postgresql "selectors of proxy and database are disjoint" \
        "find('Service', '$FULLNAME')['spec']['selector']['app.kubernetes.io/component'] == 'proxy' and find('StatefulSet')['spec']['template']['metadata']['labels']['app.kubernetes.io/component'] == 'postgresql'"
fi

expect_failure both-postgresql-modes "Configuration error: Cannot use both in-cluster PostgreSQL (postgresql.enabled=true) and external PostgreSQL (secrets.databaseUrl) at the same time. Please choose one approach." \
    --set env.DB_DRIVER=postgres --set postgresql.enabled=true --set postgresql.auth.password=x --set secrets.databaseUrl.existingSecret.name=db
expect_failure postgres-without-database "Configuration error: DB_DRIVER is set to 'postgres' but no database configuration found. Please either:" \
    --set env.DB_DRIVER=postgres

if expect_render dispatcher-disabled; then
    check dispatcher-disabled "no dispatcher objects" "'llm-proxy-dispatcher' not in text and 'dispatcher' not in text"
fi

if expect_render dispatcher-file --set dispatcher.enabled=true --set dispatcher.service=file "${REDIS[@]}"; then
    check dispatcher-file "Deployment and PVC" \
        "find('Deployment', '$FULLNAME-dispatcher') is not None and find('PersistentVolumeClaim', '$FULLNAME-dispatcher')['spec']['resources']['requests']['storage'] == '10Gi'"
    check dispatcher-file "health port 8081 with /health and /ready probes, DISPATCHER_HEALTH_ADDR" \
        "containers(find('Deployment', '$FULLNAME-dispatcher'))[0]['ports'] == [{'name': 'health', 'containerPort': 8081, 'protocol': 'TCP'}] and containers(find('Deployment', '$FULLNAME-dispatcher'))[0]['livenessProbe']['httpGet']['path'] == '/health' and containers(find('Deployment', '$FULLNAME-dispatcher'))[0]['readinessProbe']['httpGet']['path'] == '/ready' and env(find('Deployment', '$FULLNAME-dispatcher'))['DISPATCHER_HEALTH_ADDR']['value'] == ':8081'"
    check dispatcher-file "Recreate strategy for the file sink's RWO volume" \
        "find('Deployment', '$FULLNAME-dispatcher')['spec']['strategy'] == {'type': 'Recreate'} and 'strategy' not in find('Deployment', '$FULLNAME')['spec']"
    check dispatcher-file "args with the default file endpoint" \
        "containers(find('Deployment', '$FULLNAME-dispatcher'))[0]['args'] == ['dispatcher', '--service', 'file', '--endpoint', '/app/data/events.jsonl', '--buffer', '1000', '--batch-size', '100']"
fi

if expect_render dispatcher-lunary --set dispatcher.enabled=true --set dispatcher.service=lunary --set dispatcher.apiKey.existingSecret.name=dispatcher-secrets "${REDIS[@]}"; then
    check dispatcher-lunary "no PVC, LLM_PROXY_API_KEY from the Secret, lunary endpoint" \
        "find('PersistentVolumeClaim') is None and env(find('Deployment', '$FULLNAME-dispatcher'))['LLM_PROXY_API_KEY']['valueFrom']['secretKeyRef'] == {'name': 'dispatcher-secrets', 'key': 'DISPATCHER_API_KEY'} and 'https://api.lunary.ai/v1/runs/ingest' in containers(find('Deployment', '$FULLNAME-dispatcher'))[0]['args']"
fi

expect_failure dispatcher-in-memory-bus "Configuration error: Dispatcher requires LLM_PROXY_EVENT_BUS to be 'redis' or 'redis-streams', but it is set to 'in-memory'." \
    --set dispatcher.enabled=true --set env.LLM_PROXY_EVENT_BUS=in-memory
expect_failure dispatcher-default-bus "Configuration error: Dispatcher requires LLM_PROXY_EVENT_BUS to be 'redis' or 'redis-streams', but it is set to 'in-memory'." \
    --set dispatcher.enabled=true
expect_failure dispatcher-invalid-bus "Configuration error: Dispatcher requires LLM_PROXY_EVENT_BUS to be 'redis' or 'redis-streams', but it is set to 'invalid-bus'." \
    --set dispatcher.enabled=true --set env.LLM_PROXY_EVENT_BUS=invalid-bus --set redis.external.addr=redis:6379
expect_failure redis-addr-with-password "Configuration error: redis.external.addr must be host:port. It is rendered as a plain environment value, so a password must not be in it" \
    --set env.LLM_PROXY_EVENT_BUS=redis --set 'redis.external.addr=default:hunter2@redis:6379'
expect_failure redis-addr-as-url "Configuration error: redis.external.addr must be host:port." \
    --set env.LLM_PROXY_EVENT_BUS=redis --set 'redis.external.addr=redis://:hunter2@redis:6379'
expect_failure helicone-without-key "Configuration error: Dispatcher service 'helicone' requires an API key via existingSecret. Please set dispatcher.apiKey.existingSecret.name" \
    --set dispatcher.enabled=true --set dispatcher.service=helicone "${REDIS[@]}"

if expect_render ingress-disabled; then
    check ingress-disabled "no Ingress" "find('Ingress') is None"
fi
if expect_render ingress-enabled --set ingress.enabled=true --set ingress.className=nginx --set 'ingress.hosts[0].host=llm-proxy.example.com' --set 'ingress.hosts[0].paths[0].path=/' --set 'ingress.hosts[0].paths[0].pathType=Prefix'; then
    check ingress-enabled "Ingress to the Service port" \
        "find('Ingress')['spec']['ingressClassName'] == 'nginx' and find('Ingress')['spec']['rules'][0]['host'] == 'llm-proxy.example.com' and find('Ingress')['spec']['rules'][0]['http']['paths'][0]['backend']['service'] == {'name': '$FULLNAME', 'port': {'number': 8080}}"
fi
if expect_render ingress-tls --set ingress.enabled=true --set 'ingress.tls[0].secretName=llm-proxy-tls' --set 'ingress.tls[0].hosts[0]=chart-example.local'; then
    check ingress-tls "TLS entry" "find('Ingress')['spec']['tls'] == [{'hosts': ['chart-example.local'], 'secretName': 'llm-proxy-tls'}]"
fi
if expect_render ingress-annotations --set ingress.enabled=true --set 'ingress.annotations.nginx\.ingress\.kubernetes\.io/proxy-read-timeout=300' --set ingress.annotations.example\\.com/enabled=true; then
    check ingress-annotations "annotations passed through" \
        "find('Ingress')['metadata']['annotations'] == {'nginx.ingress.kubernetes.io/proxy-read-timeout': '300', 'example.com/enabled': 'true'}"
fi

if expect_render hpa-disabled; then
    check hpa-disabled "no HPA, replicas set" "find('HorizontalPodAutoscaler') is None and find('Deployment')['spec']['replicas'] == 1"
fi
if expect_render hpa-cpu --set autoscaling.enabled=true --set autoscaling.minReplicas=2 --set autoscaling.maxReplicas=20 --set autoscaling.targetCPUUtilizationPercentage=75 "${EXT_PG[@]}"; then
    check hpa-cpu "2..20 on CPU 75%, Deployment without replicas" \
        "find('HorizontalPodAutoscaler')['spec']['minReplicas'] == 2 and find('HorizontalPodAutoscaler')['spec']['maxReplicas'] == 20 and find('HorizontalPodAutoscaler')['spec']['metrics'] == [{'type': 'Resource', 'resource': {'name': 'cpu', 'target': {'type': 'Utilization', 'averageUtilization': 75}}}] and 'replicas' not in find('Deployment')['spec']"
fi
if expect_render hpa-cpu-memory --set autoscaling.enabled=true --set autoscaling.targetCPUUtilizationPercentage=70 --set autoscaling.targetMemoryUtilizationPercentage=80 "${EXT_PG[@]}"; then
    check hpa-cpu-memory "two metrics" \
        "[m['resource']['name'] for m in find('HorizontalPodAutoscaler')['spec']['metrics']] == ['cpu', 'memory']"
fi
if expect_render ingress-and-hpa --set ingress.enabled=true --set autoscaling.enabled=true "${EXT_PG[@]}"; then
    check ingress-and-hpa "Ingress and HPA together" "find('Ingress') is not None and find('HorizontalPodAutoscaler') is not None"
fi
expect_failure hpa-without-targets "Configuration error: autoscaling.enabled is true but no target metrics are configured. Please set at least one of autoscaling.targetCPUUtilizationPercentage or autoscaling.targetMemoryUtilizationPercentage." \
    --set autoscaling.enabled=true --set autoscaling.targetCPUUtilizationPercentage=null --set autoscaling.targetMemoryUtilizationPercentage=null "${EXT_PG[@]}"

echo "== HEAD additions =="
expect_failure sqlite-multi-replica "Configuration error: DB_DRIVER is 'sqlite' but the deployment can scale to 3 replicas. SQLite is not supported for multi-pod deployments." \
    --set replicaCount=3
expect_failure sqlite-hpa "Configuration error: DB_DRIVER is 'sqlite' but the deployment can scale to 10 replicas." \
    --set autoscaling.enabled=true
if expect_render encryption-key-existing-secret --set secrets.encryptionKey.existingSecret.name=llm-proxy-encryption; then
    check encryption-key-existing-secret "ENCRYPTION_KEY from the Secret, last in env" \
        "env_names(find('Deployment'))[-1] == 'ENCRYPTION_KEY' and env(find('Deployment'))['ENCRYPTION_KEY']['valueFrom']['secretKeyRef'] == {'name': 'llm-proxy-encryption', 'key': 'ENCRYPTION_KEY'}"
fi
if expect_render encryption-key-custom-key --set secrets.encryptionKey.existingSecret.name=llm-proxy-encryption --set secrets.encryptionKey.existingSecret.key=CUSTOM_KEY; then
    check encryption-key-custom-key "custom key" \
        "env(find('Deployment'))['ENCRYPTION_KEY']['valueFrom']['secretKeyRef'] == {'name': 'llm-proxy-encryption', 'key': 'CUSTOM_KEY'}"
fi
expect_failure encryption-key-required "Configuration error: ENCRYPTION_KEY is required but not configured. Provide secrets.encryptionKey.existingSecret.name (recommended) or set secrets.create=true and secrets.data.encryptionKey (development only)." \
    --set secrets.encryptionKey.required=true
if expect_render chart-managed-secrets --set secrets.create=true --set-string secrets.data.managementToken=tok --set-string secrets.data.encryptionKey=key; then
    check chart-managed-secrets "owned Secret holds the values, env refers to it" \
        "find('Secret', '$FULLNAME')['stringData'] == {'MANAGEMENT_TOKEN': 'tok', 'ENCRYPTION_KEY': 'key'} and env(find('Deployment'))['MANAGEMENT_TOKEN']['valueFrom']['secretKeyRef'] == {'name': '$FULLNAME', 'key': 'MANAGEMENT_TOKEN'} and env(find('Deployment'))['ENCRYPTION_KEY']['valueFrom']['secretKeyRef'] == {'name': '$FULLNAME', 'key': 'ENCRYPTION_KEY'}"
fi

echo "== fixes and additions of this chart =="
if expect_render redis-alias --set env.LLM_PROXY_EVENT_BUS=redis --set redis.external.addr=redis:6379 --set dispatcher.enabled=true; then
    check redis-alias "'redis' accepted as an alias of redis-streams" "find('Deployment', '$FULLNAME-dispatcher') is not None"
fi
expect_failure redis-bus-without-addr "Configuration error: LLM_PROXY_EVENT_BUS is set to 'redis-streams' but redis.external.addr is empty." \
    --set env.LLM_PROXY_EVENT_BUS=redis-streams
expect_failure dispatcher-without-redis-addr "Configuration error: Dispatcher is enabled with LLM_PROXY_EVENT_BUS='redis-streams' but redis.external.addr is empty." \
    --set dispatcher.enabled=true --set env.LLM_PROXY_EVENT_BUS=redis-streams
expect_failure dispatcher-unknown-service "Configuration error: dispatcher.service is set to 'kafka'. Please set it to 'file', 'lunary' or 'helicone'." \
    --set dispatcher.enabled=true --set dispatcher.service=kafka "${REDIS[@]}"
expect_failure postgres-without-password "Configuration error: postgresql.enabled=true but no password configured. Please set postgresql.auth.password or postgresql.auth.existingSecret" \
    --set env.DB_DRIVER=postgres --set postgresql.enabled=true
expect_failure postgres-wrong-driver "Configuration error: postgresql.enabled=true but DB_DRIVER is set to 'sqlite'. When using in-cluster PostgreSQL, DB_DRIVER must be set to 'postgres'." \
    --set postgresql.enabled=true --set postgresql.auth.password=x
if expect_render postgres-existing-secret --set env.DB_DRIVER=postgres --set postgresql.enabled=true --set postgresql.auth.existingSecret=pg-auth --set postgresql.primary.persistence.enabled=false; then
    check postgres-existing-secret "no generated Secret, password from the existing one, emptyDir data" \
        "find('Secret') is None and env(find('Deployment', '$FULLNAME'))['PGPASSWORD']['valueFrom']['secretKeyRef'] == {'name': 'pg-auth', 'key': 'password'} and 'volumeClaimTemplates' not in find('StatefulSet')['spec']"
fi
if expect_render sqlite-persistence --set persistence.enabled=true --set persistence.size=5Gi --set persistence.storageClass=fast; then
    check sqlite-persistence "Recreate strategy (the RWO volume cannot move to a surge pod)" \
        "find('Deployment')['spec']['strategy'] == {'type': 'Recreate'}"
    check sqlite-persistence "PVC mounted at /app/data" \
        "find('PersistentVolumeClaim', '$FULLNAME-data')['spec'] == {'accessModes': ['ReadWriteOnce'], 'storageClassName': 'fast', 'resources': {'requests': {'storage': '5Gi'}}} and {'name': 'data', 'persistentVolumeClaim': {'claimName': '$FULLNAME-data'}} in find('Deployment')['spec']['template']['spec']['volumes']"
fi
if expect_render providers-config --set 'providers.default_api=openai' --set 'providers.apis.openai.base_url=https://api.openai.com' --set 'providers.apis.openai.allowed_endpoints={/v1/chat/completions}' --set 'providers.apis.openai.allowed_methods={POST}'; then
    check providers-config "providers ConfigMap mounted read-only at /app/config" \
        "yaml.safe_load(find('ConfigMap', '$FULLNAME-providers')['data']['api_providers.yaml'])['apis']['openai']['allowed_methods'] == ['POST'] and {'name': 'config', 'mountPath': '/app/config', 'readOnly': True} in containers(find('Deployment'))[0]['volumeMounts']"
fi
if expect_render dispatcher-api-key-value --set dispatcher.enabled=true --set dispatcher.service=helicone --set-string dispatcher.apiKey.value=hk "${REDIS[@]}"; then
    check dispatcher-api-key-value "owned dispatcher Secret, env refers to it" \
        "find('Secret', '$FULLNAME-dispatcher')['stringData'] == {'DISPATCHER_API_KEY': 'hk'} and env(find('Deployment', '$FULLNAME-dispatcher'))['LLM_PROXY_API_KEY']['valueFrom']['secretKeyRef'] == {'name': '$FULLNAME-dispatcher', 'key': 'DISPATCHER_API_KEY'}"
fi
if expect_render metrics-full --set metrics.enabled=true --set metrics.serviceMonitor.enabled=true --set metrics.grafanaDashboard.enabled=true; then
    check metrics-full "ServiceMonitor on /metrics/prometheus, dashboard ConfigMap, scrape annotations" \
        "find('ServiceMonitor')['spec']['endpoints'][0]['path'] == '/metrics/prometheus' and find('ServiceMonitor')['spec']['selector']['matchLabels']['app.kubernetes.io/component'] == 'proxy' and 'llm_proxy_requests_total' in find('ConfigMap', '$FULLNAME-dashboard')['data']['llm-proxy.json'] and find('Service')['metadata']['annotations']['prometheus.io/path'] == '/metrics/prometheus'"
fi

echo "== seed README install commands =="
expect_render readme-quickstart-sqlite "${IMAGE[@]}" "${MGMT[@]}" || true
expect_render readme-quickstart-external-postgresql "${IMAGE[@]}" "${MGMT[@]}" "${EXT_PG[@]}" || true
if "$HELM" dependency update "$CHART" >/dev/null 2>&1; then
    scenario_number=$((scenario_number + 1)); pass "readme-helm-dependency-update (offline)"
else
    scenario_number=$((scenario_number + 1)); fail "readme-helm-dependency-update" "helm dependency update failed"
fi
expect_render readme-quickstart-in-cluster-postgresql "${IMAGE[@]}" "${MGMT[@]}" --set env.DB_DRIVER=postgres --set postgresql.enabled=true --set-string "postgresql.auth.password=$(printf 'x%.0s' {1..44})" || true
expect_render readme-chart-managed-secret "${IMAGE[@]}" --set secrets.create=true --set-string secrets.data.managementToken=your-token || true
expect_render readme-sqlite "${IMAGE[@]}" "${MGMT[@]}" --set env.DB_DRIVER=sqlite || true
expect_render readme-external-redis "${IMAGE[@]}" "${MGMT[@]}" --set redis.external.addr=redis.example.com:6379 --set redis.external.db=0 --set env.LLM_PROXY_EVENT_BUS=redis-streams || true
# The README's password example omits LLM_PROXY_EVENT_BUS: the in-memory bus stays, Redis env is still wired.
if expect_render readme-redis-password "${IMAGE[@]}" "${MGMT[@]}" --set redis.external.addr=redis.example.com:6379 --set redis.external.password.existingSecret.name=redis-password; then
    check readme-redis-password "REDIS_PASSWORD from the Secret" \
        "env(find('Deployment'))['REDIS_PASSWORD']['valueFrom']['secretKeyRef'] == {'name': 'redis-password', 'key': 'REDIS_PASSWORD'}"
fi
expect_render readme-in-memory-bus "${IMAGE[@]}" "${MGMT[@]}" --set env.LLM_PROXY_EVENT_BUS=in-memory || true
expect_render readme-dispatcher-file-example "${REDIS[@]}" --set dispatcher.enabled=true --set dispatcher.service=file --set dispatcher.persistence.enabled=true --set dispatcher.persistence.size=10Gi || true
expect_render readme-dispatcher-lunary-example "${REDIS[@]}" --set dispatcher.enabled=true --set dispatcher.service=lunary --set dispatcher.apiKey.existingSecret.name=dispatcher-secrets --set dispatcher.apiKey.existingSecret.key=LUNARY_API_KEY || true
expect_render readme-dispatcher-helicone-example "${REDIS[@]}" --set dispatcher.enabled=true --set dispatcher.service=helicone --set-string dispatcher.apiKey.value=your-helicone-api-key || true

echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]

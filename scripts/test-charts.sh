#!/usr/bin/env bash
# Every packaging check: both Helm charts, the CRD copies, config/ (kustomize, RBAC, ArgoCD health check)
# and the Dockerfiles. Offline after the first run (scripts/tools.sh caches the tools in .cache/tools).
# One PASS/FAIL line per check, details indented below a FAIL, a final "N passed, M failed"; exit 1 on any failure.
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT" || exit 1
if ! source scripts/tools.sh; then
    echo "FAIL tools: scripts/tools.sh could not provide the packaging tools (see its message above)"
    echo "0 passed, 1 failed"
    exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
CRD_FILE="crds/llmproxies.llm-proxy.io.yaml"
K8S_VERSION="1.33.0"
OPERATOR_CHART="charts/llm-proxy-operator"
PROXY_CHART="charts/llm-proxy"
passed=0
failed=0

# check NAME COMMAND...: runs COMMAND, prints PASS or FAIL (with its output indented).
check() {
    local name="$1"; shift
    local output
    if output="$("$@" 2>&1)"; then
        passed=$((passed + 1))
        echo "PASS $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        tail -n 60 <<<"$output" | sed 's/^/    /'
    fi
}

# Operator chart renders: defaults, namespace-scoped with leader election, everything optional on.
render_operator_profiles() {
    local dir="$1"
    mkdir -p "$dir"
    "$HELM" template llm-proxy-operator "$OPERATOR_CHART" -n llm-proxy-system >"$dir/operator-default.yaml" &&
    "$HELM" template llm-proxy-operator "$OPERATOR_CHART" -n llm-proxy-system --set replicaCount=2 \
        --set 'watchNamespaces={team-a,team-b}' >"$dir/operator-namespaced.yaml" &&
    "$HELM" template llm-proxy-operator "$OPERATOR_CHART" -n llm-proxy-system --set leaderElection.enabled=true \
        --set metrics.serviceMonitor.enabled=true --set networkPolicy.enabled=true --set crds.keep=false \
        >"$dir/operator-full.yaml" &&
    "$HELM" template llm-proxy-operator "$OPERATOR_CHART" -n llm-proxy-system --set crds.install=false \
        --set rbac.create=false --set serviceAccount.create=false --set serviceAccount.name=existing \
        >"$dir/operator-minimal.yaml"
}

# All renders of both charts into $1 (the llm-proxy scenarios come from validate-helm-chart.sh).
render_all() {
    local dir="$1"
    mkdir -p "$dir/proxy"
    RENDER_DIR="$dir/proxy" scripts/validate-helm-chart.sh >"$dir/validate.log" 2>&1 || { cat "$dir/validate.log"; return 1; }
    render_operator_profiles "$dir/operator"
}

kubernetes_validate_all() {
    local dir="$1" file rc=0
    for file in "$dir"/proxy/*.yaml "$dir"/operator/*.yaml; do
        "$KUBERNETES_VALIDATE" -k "$K8S_VERSION" --strict --quiet "$file" || { echo "in $file"; rc=1; }
    done
    return $rc
}

lint_profiles() {
    "$HELM" lint --strict "$PROXY_CHART" &&
    "$HELM" lint --strict "$PROXY_CHART" --set env.DB_DRIVER=postgres --set postgresql.enabled=true \
        --set postgresql.auth.password=x --set dispatcher.enabled=true --set redis.external.addr=r:6379 \
        --set env.LLM_PROXY_EVENT_BUS=redis-streams --set ingress.enabled=true --set autoscaling.enabled=true \
        --set metrics.enabled=true --set metrics.serviceMonitor.enabled=true --set metrics.grafanaDashboard.enabled=true &&
    "$HELM" lint --strict "$OPERATOR_CHART" &&
    "$HELM" lint --strict "$OPERATOR_CHART" --set 'watchNamespaces={a,b}' --set replicaCount=2 \
        --set metrics.serviceMonitor.enabled=true --set networkPolicy.enabled=true
}

schema_rejects() {
    local out
    if out="$("$HELM" template x "$OPERATOR_CHART" --set 'watchNamespaces={Not_A_Namespace}' 2>&1)"; then
        echo "an invalid namespace name rendered"; return 1
    fi
    grep -q "Does not match pattern" <<<"$out" || { echo "$out"; return 1; }
    if out="$("$HELM" template x "$OPERATOR_CHART" --set replicas=2 2>&1)"; then
        echo "an unknown value rendered"; return 1
    fi
    grep -q "Additional property replicas is not allowed" <<<"$out" || { echo "$out"; return 1; }
}

renders_are_deterministic() {
    render_all "$WORK/second" && diff -r "$WORK/first" "$WORK/second"
}

values_documented() {
    "$PYTHON" scripts/chart_checks.py values-docs "$PROXY_CHART" &&
    "$PYTHON" scripts/chart_checks.py values-docs "$OPERATOR_CHART"
}

env_names_in_contract() {
    "$PYTHON" scripts/chart_checks.py env-names . "$WORK"/first/proxy/*.yaml
}

# NOTES.txt is not rendered by `helm template`: render a copy of it as an ordinary template.
notes_render() {
    local copy="$WORK/notes-chart"
    rm -rf "$copy" && cp -r "$PROXY_CHART" "$copy" && cp "$copy/templates/NOTES.txt" "$copy/templates/notes-check.yaml" &&
    "$HELM" template notes "$copy" --show-only templates/notes-check.yaml "$@"
}

notes_boxes() {
    local defaults full
    defaults="$(notes_render)" || return 1
    full="$(notes_render --set secrets.managementToken.existingSecret.name=m --set secrets.encryptionKey.existingSecret.name=e \
        --set env.DB_DRIVER=postgres --set postgresql.enabled=true --set postgresql.auth.password=x \
        --set dispatcher.enabled=true --set redis.external.addr=r:6379 --set env.LLM_PROXY_EVENT_BUS=redis-streams \
        --set ingress.enabled=true)" || return 1
    if grep -q "WARNING: no MANAGEMENT_TOKEN secret is configured" <<<"$defaults" &&
        grep -q "SECURITY WARNING: ENCRYPTION_KEY is not configured" <<<"$defaults" &&
        grep -q "kubectl --namespace default port-forward service/notes-llm-proxy" <<<"$defaults" &&
        ! grep -q "WARNING" <<<"$full" &&
        grep -q "IN-CLUSTER POSTGRESQL ENABLED" <<<"$full" &&
        grep -q "DISPATCHER DEPLOYMENT ENABLED" <<<"$full" &&
        grep -q "http://chart-example.local/" <<<"$full"; then
        return 0
    fi
    printf 'defaults:\n%s\nfull:\n%s\n' "$defaults" "$full"
    return 1
}

assert_render() { "$PYTHON" scripts/chart_checks.py assert "$@"; }

operator_chart_behaviour() {
    local dir="$1"
    assert_render "$dir/operator-default.yaml" \
        "find('Deployment')['spec']['template']['spec']['containers'][0]['args'] == ['run'] and find('ClusterRole') is not None and find('Role') is None" &&
    assert_render "$dir/operator-namespaced.yaml" \
        "find('Deployment')['spec']['template']['spec']['containers'][0]['args'] == ['run', '--watch-namespaces', 'team-a,team-b', '--leader-election'] and sorted(d['metadata']['namespace'] for d in docs if d['kind'] == 'Role') == ['llm-proxy-system', 'team-a', 'team-b'] and find('ClusterRole') is None" &&
    assert_render "$dir/operator-full.yaml" \
        "'--leader-election' in find('Deployment')['spec']['template']['spec']['containers'][0]['args'] and find('ServiceMonitor') is not None and find('NetworkPolicy')['spec']['ingress'][0]['ports'] == [{'port': 'metrics', 'protocol': 'TCP'}]" &&
    assert_render "$dir/operator-default.yaml" \
        "[e['name'] for e in find('Deployment')['spec']['template']['spec']['containers'][0]['env']] == ['POD_NAME', 'POD_NAMESPACE', 'LEASE_NAMESPACE'] and find('Deployment')['spec']['template']['spec']['securityContext']['runAsUser'] == 1000 and find('Deployment')['spec']['template']['spec']['containers'][0]['securityContext']['readOnlyRootFilesystem'] and find('Service', 'llm-proxy-operator-metrics')['spec']['ports'][0]['port'] == 8080" &&
    assert_render "$dir/operator-minimal.yaml" \
        "sorted(d['kind'] for d in docs) == ['Deployment', 'Service'] and find('Deployment')['spec']['template']['spec']['serviceAccountName'] == 'existing'"
}

crd_in_chart() {
    local dir="$1"
    assert_render "$dir/operator-default.yaml" \
        "find('CustomResourceDefinition', 'llmproxies.llm-proxy.io')['metadata']['annotations']['helm.sh/resource-policy'] == 'keep'" &&
    assert_render "$dir/operator-full.yaml" \
        "'helm.sh/resource-policy' not in find('CustomResourceDefinition')['metadata'].get('annotations', {})" &&
    assert_render "$dir/operator-minimal.yaml" "find('CustomResourceDefinition') is None" &&
    # The rendered CRD must carry the same spec as crds/ (only labels and annotations are added).
    "$PYTHON" - "$CRD_FILE" "$dir/operator-default.yaml" <<'PY'
import sys, yaml
source = yaml.safe_load(open(sys.argv[1]))
rendered = next(d for d in yaml.safe_load_all(open(sys.argv[2])) if d and d["kind"] == "CustomResourceDefinition")
sys.exit(0 if rendered["spec"] == source["spec"] else print("rendered CRD spec differs from", sys.argv[1]) or 1)
PY
}

kustomize_default() {
    "$KUBECTL" kustomize config/default >"$WORK/kustomize.yaml" &&
    "$KUBERNETES_VALIDATE" -k "$K8S_VERSION" --strict --quiet "$WORK/kustomize.yaml" &&
    assert_render "$WORK/kustomize.yaml" \
        "sorted(d['kind'] for d in docs) == ['ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'Deployment', 'Namespace', 'Service', 'ServiceAccount'] and all(d['metadata'].get('namespace') == 'llm-proxy-system' for d in docs if d['kind'] in ('Deployment', 'Service', 'ServiceAccount'))"
}

cr_files() {
    local files=()
    shopt -s nullglob
    files+=(config/samples/*.yaml config/argocd/resource_customizations/*/*/testdata/*.yaml)
    files+=("$WORK"/first/proxy/*.yaml "$WORK"/first/operator/*.yaml)
    shopt -u nullglob
    printf '%s\n' "${files[@]}"
}

validate_crs() {
    local files
    mapfile -t files < <(cr_files)
    "$PYTHON" scripts/validate_cr.py "$CRD_FILE" -- "${files[@]}"
}

# The operator's offline `render` and the chart must turn every sample into the same workloads.
operator_and_chart_agree() {
    local operator="${CARGO_TARGET_DIR:-target}/debug/llm-proxy-operator"
    samples_exist &&
    cargo build --quiet -p llm-proxy-operator --bin llm-proxy-operator &&
    "$PYTHON" scripts/compare_render.py "$HELM" "$operator" config/samples/*.yaml
}

argocd_applications() {
    assert_render config/argocd/operator-application.yaml \
        "find('Application')['metadata']['annotations']['argocd.argoproj.io/sync-wave'] == '-1' and find('Application')['metadata']['annotations']['argocd.argoproj.io/compare-options'] == 'ServerSideDiff=true' and 'ServerSideApply=true' in find('Application')['spec']['syncPolicy']['syncOptions'] and find('Application')['spec']['source']['path'] == 'charts/llm-proxy-operator'" &&
    assert_render config/argocd/llmproxy-samples-application.yaml \
        "find('Application')['metadata']['annotations']['argocd.argoproj.io/sync-wave'] == '1' and {'ServerSideApply=true', 'SkipDryRunOnMissingResource=true'} <= set(find('Application')['spec']['syncPolicy']['syncOptions']) and find('Application')['spec']['source']['path'] == 'config/samples'"
}

samples_exist() {
    compgen -G "config/samples/*.yaml" >/dev/null || { echo "config/samples/ has no LlmProxy yet"; return 1; }
}

echo "== tools: helm $("$HELM" version --short), $("$KUBERNETES_VALIDATE" --version 2>/dev/null | head -n1), $("$LUA" -v 2>&1)"
check "helm lint --strict (both charts, default and full profiles)" lint_profiles
check "validate-helm-chart.sh (seed scenarios, expected failures, README commands)" render_all "$WORK/first"
check "kubernetes-validate -k $K8S_VERSION --strict on every rendered scenario" kubernetes_validate_all "$WORK/first"
check "rendering twice gives identical output (ArgoCD determinism)" renders_are_deterministic
check "llm-proxy NOTES.txt: warning, PostgreSQL, dispatcher and URL boxes" notes_boxes
check "operator chart: args, leader election, per-namespace RBAC, optional objects" operator_chart_behaviour "$WORK/first/operator"
check "operator chart: values.schema.json rejects invalid values" schema_rejects
check "RBAC: rendered rules equal charts/llm-proxy-operator/rbac-rules.json" \
    "$PYTHON" scripts/chart_checks.py rbac "$OPERATOR_CHART/rbac-rules.json" "$WORK/first/operator/operator-full.yaml" "$WORK/first/operator/operator-namespaced.yaml"
check "RBAC: rbac-rules.json equals the operator's required_rbac() (operator/src/rbac.rs)" \
    "$PYTHON" scripts/chart_checks.py rbac-operator "$OPERATOR_CHART/rbac-rules.json" operator/src/rbac.rs
check "README value tables list every value (both charts)" values_documented
check "Grafana dashboard queries only metrics the proxy registers" "$PYTHON" scripts/chart_checks.py dashboard-metrics .
check "versions agree (workspace, Chart.yaml, image tags, Dockerfiles)" "$PYTHON" scripts/chart_checks.py versions .
check "proxy env names belong to the llm-proxy-env contract" env_names_in_contract
check "shellcheck of the packaging scripts" "$SHELLCHECK" -x scripts/tools.sh scripts/test-charts.sh scripts/validate-helm-chart.sh
check "hadolint docker/*.Dockerfile" "$HADOLINT" docker/llm-proxy.Dockerfile docker/llm-proxy-operator.Dockerfile
check "ArgoCD Application examples: sync waves -1/1, ServerSideApply, SkipDryRunOnMissingResource" argocd_applications
check "ArgoCD health check (health.lua) against its fixtures with Lua 5.1" \
    "$PYTHON" scripts/lua_health_test.py "$LUA" config/argocd/resource_customizations
check "generated files up to date (chart CRD copy, config/rbac, config/manager)" "$PYTHON" scripts/sync_generated.py "$HELM" --check
check "operator chart renders the CRD of crds/ (keep annotation, crds.install switch)" crd_in_chart "$WORK/first/operator"
check "kubectl kustomize config/default renders and validates" kustomize_default
check "every llm-proxy chart value is a field of the LlmProxy spec (chart-only keys listed in chart_checks.py)" \
    "$PYTHON" scripts/chart_checks.py spec-parity .
check "config/samples has LlmProxy samples" samples_exist
check "LlmProxy samples, fixtures and chart CRs valid against the CRD schema" validate_crs
check "operator render and llm-proxy chart agree on every sample (workloads, env order, probes, mounts)" operator_and_chart_agree

echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]

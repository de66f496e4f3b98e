"""Keeps the generated packaging files in step with their sources.

usage: sync_generated.py HELM [--check]

  charts/llm-proxy-operator/files/crds/*.yaml  <- crds/*.yaml (the operator's committed `crd` output)
  config/rbac/*.yaml, config/manager/*.yaml    <- `helm template` of charts/llm-proxy-operator with its
                                                  defaults (release llm-proxy-operator, namespace
                                                  llm-proxy-system, crds.install=false)

Without --check the files are (re)written. With --check nothing is written and the exit status is 1 when a
file is missing or differs (the message names the command that fixes it). Run with the Python of
scripts/tools.sh.
"""

import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "llm-proxy-operator"
RELEASE = "llm-proxy-operator"
NAMESPACE = "llm-proxy-system"
HEADER = "# Generated from charts/llm-proxy-operator (default values) by scripts/sync_generated.py; do not edit.\n"

# Rendered kind -> (directory, file name) of the plain manifests.
LAYOUT = {
    "ServiceAccount": ("rbac", "service_account.yaml"),
    "ClusterRole": ("rbac", "role.yaml"),
    "ClusterRoleBinding": ("rbac", "role_binding.yaml"),
    "Deployment": ("manager", "manager.yaml"),
    "Service": ("manager", "metrics_service.yaml"),
}
NAMESPACE_DOC = f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n  labels:\n    app.kubernetes.io/name: llm-proxy-operator\n"


def plain(text):
    """Helm's bookkeeping labels do not belong in plain manifests."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("helm.sh/chart:") or stripped.startswith("# Source:"):
            continue
        lines.append(line.replace("app.kubernetes.io/managed-by: Helm", "app.kubernetes.io/managed-by: kustomize"))
    return "\n".join(lines).strip() + "\n"


def wanted_files(helm):
    files = {}
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        if crd.name != "kustomization.yaml":
            files[CHART / "files" / "crds" / crd.name] = crd.read_text(encoding="utf-8")
    rendered = subprocess.run(
        [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--set", "crds.install=false"],
        check=True, capture_output=True, text=True,
    ).stdout
    by_dir = {"rbac": [], "manager": ["namespace.yaml"]}
    files[ROOT / "config" / "manager" / "namespace.yaml"] = HEADER + NAMESPACE_DOC
    for chunk in rendered.split("\n---\n"):
        doc = yaml.safe_load(chunk)
        if not doc:
            continue
        directory, name = LAYOUT[doc["kind"]]
        files[ROOT / "config" / directory / name] = HEADER + plain(chunk)
        by_dir[directory].append(name)
    for directory, names in by_dir.items():
        resources = "".join(f"  - {name}\n" for name in sorted(names))
        files[ROOT / "config" / directory / "kustomization.yaml"] = (
            HEADER + "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n" + resources
        )
    return files


def main(argv):
    if not argv or len(argv) > 2 or (len(argv) == 2 and argv[1] != "--check"):
        print(__doc__, file=sys.stderr)
        return 2
    check = len(argv) == 2
    stale = []
    for path, content in wanted_files(argv[0]).items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        if check:
            stale.append(path.relative_to(ROOT))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    for path in stale:
        print(f"  {path} is stale: run  source scripts/tools.sh && \"$PYTHON\" scripts/sync_generated.py \"$HELM\"")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

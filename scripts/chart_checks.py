"""Static checks of the Helm charts, one subcommand each (used by scripts/test-charts.sh).

  values-docs CHART_DIR            every leaf key of values.yaml appears in the README's value table, and
                                   the table names no key that values.yaml lacks
  rbac RULES_JSON CLUSTER_RENDER NAMESPACED_RENDER
                                   the rendered ClusterRole/Role rules equal rbac-rules.json, for a cluster-wide
                                   render and for a render with watchNamespaces (leader election on in both)
  rbac-operator RULES_JSON RBAC_RS  rbac-rules.json lists exactly the rules of the operator's required_rbac()
                                   (operator/src/rbac.rs, read as text: `child("group", "resource")` calls
                                   with CHILD_VERBS and `RbacRule { api_group, resource, verbs }` literals)
  versions REPO_ROOT               chart versions, appVersions, default image tags, the Dockerfiles' VERSION and the
                                   workspace version agree
  dashboard-metrics REPO_ROOT       every llm_proxy_* metric of charts/llm-proxy/dashboards/llm-proxy.json is
                                   registered by the proxy (a `.register("name", ...)` call in proxy/src)
  spec-parity REPO_ROOT             every value of charts/llm-proxy is a field of the LlmProxy spec in crds/
                                   (design.md: users paste their values under `spec:`), except CHART_ONLY
  assert RENDER PYTHON_EXPR         PYTHON_EXPR holds over the rendered documents (`docs`, `find(kind, name)`)
  env-names REPO_ROOT RENDER...     every env var the rendered proxy/dispatcher pods set is part of the
                                   llm-proxy-env contract (proxy-env/src/lib.rs)

Exit status 0 on success, 1 with the differences printed otherwise. Run with the Python of scripts/tools.sh.
"""

import json
import pathlib
import re
import sys

import yaml


def leaf_keys(node, prefix=""):
    """Dotted paths of values.yaml leaves; empty maps and lists are leaves, non-empty lists too."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaf_keys(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1]


def values_docs(chart_dir):
    chart = pathlib.Path(chart_dir)
    values = yaml.safe_load((chart / "values.yaml").read_text(encoding="utf-8")) or {}
    documented = set(re.findall(r"^\|\s*`([^`]+)`\s*\|", (chart / "README.md").read_text(encoding="utf-8"), re.M))
    keys = set(leaf_keys(values))
    values_text = (chart / "values.yaml").read_text(encoding="utf-8")
    missing = sorted(keys - documented)
    # A key may be documented while its default is commented out in values.yaml (unset by default).
    unknown = sorted(k for k in documented - keys if not re.search(rf"^\s*#\s*{re.escape(k.rsplit('.', 1)[-1])}:", values_text, re.M))
    for key in missing:
        print(f"  {chart.name}: values.yaml key not in README table: {key}")
    for key in unknown:
        print(f"  {chart.name}: README table key not in values.yaml: {key}")
    return 0 if not missing and not unknown else 1


def expand(rules):
    out = set()
    for rule in rules or []:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                out.add((group, resource, tuple(sorted(rule.get("verbs", [])))))
    return out


def rendered_rules(path):
    by_kind = {}
    with open(path, encoding="utf-8") as handle:
        for doc in yaml.safe_load_all(handle):
            if doc and doc.get("kind") in ("ClusterRole", "Role"):
                name = f"{doc['kind']}/{doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}"
                by_kind[name] = expand(doc.get("rules"))
    return by_kind


def rbac(rules_json, cluster_render, namespaced_render):
    with open(rules_json, encoding="utf-8") as handle:
        expected = json.load(handle)["rules"]
    want = {}
    for rule in expected:
        want.setdefault(rule["scope"], set()).add((rule["apiGroup"], rule["resource"], tuple(sorted(rule["verbs"]))))
    failures = []

    def compare(label, got, wanted):
        if got != wanted:
            for item in sorted(wanted - got):
                failures.append(f"  {label}: missing {item}")
            for item in sorted(got - wanted):
                failures.append(f"  {label}: not in rbac-rules.json {item}")

    cluster_only = want.get("cluster", set())
    cluster = rendered_rules(cluster_render)
    cluster_roles = {k: v for k, v in cluster.items() if k.startswith("ClusterRole/")}
    lease_roles = {k: v for k, v in cluster.items() if k.startswith("Role/")}
    if len(cluster_roles) != 1 or len(lease_roles) != 1:
        failures.append(f"  cluster-wide render: expected one ClusterRole and one Role, got {sorted(cluster)}")
    else:
        compare("ClusterRole (cluster-wide)", next(iter(cluster_roles.values())), want["watched-namespaces"] | cluster_only)
        compare("leader-election Role", next(iter(lease_roles.values())), want["leader-election"])

    namespaced = rendered_rules(namespaced_render)
    ns_roles = {k: v for k, v in namespaced.items() if k.startswith("Role/") and not k.endswith("-leader-election")}
    ns_cluster = {k: v for k, v in namespaced.items() if k.startswith("ClusterRole/")}
    if len(ns_roles) < 2 or len(ns_cluster) != (1 if cluster_only else 0):
        failures.append(f"  namespaced render: expected a Role per namespace and {len(cluster_only and [1])} ClusterRole, got {sorted(namespaced)}")
    else:
        for name, got in ns_roles.items():
            compare(name, got, want["watched-namespaces"])
        for name, got in ns_cluster.items():
            compare(name, got, cluster_only)
    for line in failures:
        print(line)
    return 1 if failures else 0


def rbac_operator(rules_json, rbac_rs):
    with open(rules_json, encoding="utf-8") as handle:
        chart = {(r["apiGroup"], r["resource"], tuple(sorted(r["verbs"]))) for r in json.load(handle)["rules"]}
    source = pathlib.Path(rbac_rs).read_text(encoding="utf-8")
    verb_list = lambda text: tuple(sorted(re.findall(r'"([a-z]+)"', text)))  # noqa: E731
    child_verbs = re.search(r"const CHILD_VERBS[^=]*=\s*&\[([^\]]*)\]", source)
    operator = set()
    for group, resource in re.findall(r'child\(\s*"([^"]*)"\s*,\s*"([^"]+)"\s*\)', source):
        if not child_verbs:
            print(f"  {rbac_rs}: child(...) rules but no CHILD_VERBS")
            return 1
        operator.add((group, resource, verb_list(child_verbs.group(1))))
    for group, resource, verbs in re.findall(
        r'RbacRule\s*\{\s*api_group:\s*"([^"]*)"\s*,\s*resource:\s*"([^"]+)"\s*,\s*verbs:\s*&\[([^\]]*)\]', source
    ):
        operator.add((group, resource, verb_list(verbs)))
    if not operator:
        print(f"  found no rule in {rbac_rs}")
        return 1
    for rule in sorted(operator - chart):
        print(f"  operator needs {rule}, rbac-rules.json lacks it")
    for rule in sorted(chart - operator):
        print(f"  rbac-rules.json grants {rule}, the operator's required_rbac() does not list it")
    return 0 if operator == chart else 1


def versions(repo_root):
    root = pathlib.Path(repo_root)
    cargo = (root / "Cargo.toml").read_text(encoding="utf-8")
    match = re.search(r"^\[workspace\.package\][^\[]*?^version\s*=\s*\"([^\"]+)\"", cargo, re.M | re.S)
    if not match:
        print("  Cargo.toml: no [workspace.package] version")
        return 1
    workspace = match.group(1)
    found = {"Cargo.toml workspace.package.version": workspace}
    for chart in ("llm-proxy", "llm-proxy-operator"):
        meta = yaml.safe_load((root / "charts" / chart / "Chart.yaml").read_text(encoding="utf-8"))
        values = yaml.safe_load((root / "charts" / chart / "values.yaml").read_text(encoding="utf-8"))
        found[f"charts/{chart} version"] = str(meta["version"])
        found[f"charts/{chart} appVersion"] = str(meta["appVersion"])
        found[f"charts/{chart} image.tag (or appVersion)"] = str(values["image"]["tag"] or meta["appVersion"])
    for image in ("llm-proxy", "llm-proxy-operator"):
        dockerfile = root / "docker" / f"{image}.Dockerfile"
        text = dockerfile.read_text(encoding="utf-8") if dockerfile.exists() else ""
        arg = re.search(r"^ARG VERSION=(\S+)$", text, re.M)
        found[f"docker/{image}.Dockerfile ARG VERSION"] = arg.group(1) if arg else "<missing>"
    wrong = {k: v for k, v in found.items() if v != workspace}
    for key, value in wrong.items():
        print(f"  {key} = {value}, workspace version = {workspace}")
    return 1 if wrong else 0


def env_names(repo_root, renders):
    contract = set(re.findall(r'^\s*[A-Z0-9_]+ = "([A-Z0-9_]+)"', (pathlib.Path(repo_root) / "proxy-env/src/lib.rs").read_text(encoding="utf-8"), re.M))
    # Kubernetes-only helper variables of the chart: PGPASSWORD feeds $(PGPASSWORD) in DATABASE_URL; the
    # POSTGRES_* variables belong to the postgres image.
    chart_only = {"PGPASSWORD", "POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD", "PGDATA"}
    unknown = set()
    for path in renders:
        with open(path, encoding="utf-8") as handle:
            for doc in yaml.safe_load_all(handle):
                if not doc or doc.get("kind") not in ("Deployment", "StatefulSet"):
                    continue
                if doc["metadata"].get("labels", {}).get("app.kubernetes.io/name") != "llm-proxy":
                    continue
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    for entry in container.get("env", []):
                        if entry["name"] not in contract and entry["name"] not in chart_only:
                            unknown.add((path, entry["name"]))
    for path, name in sorted(unknown):
        print(f"  {path}: env {name} is not in the llm-proxy-env contract")
    return 1 if unknown else 0


def dashboard_metrics(repo_root):
    root = pathlib.Path(repo_root)
    dashboard = json.loads((root / "charts/llm-proxy/dashboards/llm-proxy.json").read_text(encoding="utf-8"))
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_(total|bucket|sum|count)$", "", m) for e in expressions for m in re.findall(r"\bllm_proxy_\w+", e)}
    source = "\n".join(path.read_text(encoding="utf-8") for path in (root / "proxy" / "src").rglob("*.rs"))
    # prometheus-client: names are registered without the registry prefix; counters get _total on export.
    registered = {f"llm_proxy_{name}" for name in re.findall(r'\.register(?:_with_unit)?\(\s*"(\w+)"', source)}
    if not registered:
        print("  found no metric registration in proxy/src")
        return 1
    unknown = sorted(used - registered)
    for metric in unknown:
        print(f"  dashboard uses {metric}, which proxy/src does not register")
    return 1 if unknown or not used else 0


# Values of charts/llm-proxy with no LlmProxy counterpart, and why.
CHART_ONLY = {
    "nameOverride": "children are named after the LlmProxy",
    "fullnameOverride": "children are named after the LlmProxy",
    "volumes": "the operator owns the pod's volumes",
    "volumeMounts": "the operator owns the pod's volumes",
    "postgresql.image": "the operator's --postgres-image flag",
    "postgresql.primary.service": "the operator's PostgreSQL Service uses port 5432",
    "dispatcher.livenessProbe": "the operator probes the dispatcher's health port itself",
    "dispatcher.readinessProbe": "the operator probes the dispatcher's health port itself",
}


def spec_parity(repo_root):
    root = pathlib.Path(repo_root)
    values = yaml.safe_load((root / "charts/llm-proxy/values.yaml").read_text(encoding="utf-8"))
    crd = yaml.safe_load((root / "crds/llmproxies.llm-proxy.io.yaml").read_text(encoding="utf-8"))
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]

    def in_schema(schema, parts):
        for part in parts:
            if schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema:
                return True
            if part not in schema.get("properties", {}):
                return False
            schema = schema["properties"][part]
        return True

    missing = []
    for key in leaf_keys(values):
        if any(key == k or key.startswith(k + ".") for k in CHART_ONLY):
            continue
        # Map keys may contain dots (prometheus.io/scrape): they end below a free-form map.
        if not in_schema(spec, key.split(".")):
            missing.append(key)
    for key in missing:
        print(f"  charts/llm-proxy value {key} has no field in the LlmProxy spec")
    return 1 if missing else 0


def assert_render(render, expression):
    with open(render, encoding="utf-8") as handle:
        docs = [d for d in yaml.safe_load_all(handle) if d]

    def find(kind, name=None):
        return next((d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])), None)

    try:
        holds = eval(expression, {"docs": docs, "find": find})  # noqa: S307 - expressions come from test-charts.sh
    except (KeyError, IndexError, TypeError) as error:
        holds, reason = False, f"{type(error).__name__}: {error}"
    else:
        reason = "false"
    if holds:
        return 0
    print(f"  does not hold ({reason}) in {render}: {expression}")
    return 1


def main(argv):
    commands = {
        "assert": (assert_render, 2),
        "values-docs": (values_docs, 1),
        "rbac": (rbac, 3),
        "rbac-operator": (rbac_operator, 2),
        "versions": (versions, 1),
        "dashboard-metrics": (dashboard_metrics, 1),
        "spec-parity": (spec_parity, 1),
    }
    if argv and argv[0] == "env-names" and len(argv) >= 3:
        return env_names(argv[1], argv[2:])
    if not argv or argv[0] not in commands or len(argv) - 1 != commands[argv[0]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    function, _ = commands[argv[0]]
    return function(*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

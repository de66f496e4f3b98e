"""Checks that the operator and the llm-proxy chart turn the same values into the same workloads.

usage: compare_render.py HELM OPERATOR_BINARY LLMPROXY_FILE [...]

For each LlmProxy file, `OPERATOR_BINARY render -f FILE` is compared with `helm template <name> charts/llm-proxy`
given the LlmProxy's spec as values (spec keys are the chart's value keys) and fullnameOverride=<name>. For every
Deployment, StatefulSet and Service either side renders, both must render it, with equal selectors, container
names, args, env var names in order, ports, probe paths, volume mount paths and the pod's service-account-token and
Service-link switches. Secrets and ConfigMaps are not
compared: the operator owns different ones (generated management token, rendered plaintext values), and the
MANAGEMENT_TOKEN env the operator adds for its generated token is ignored when the chart has none.
Exit status 1 on any difference. Run with the Python of scripts/tools.sh.
"""

import pathlib
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPARED_KINDS = ("Deployment", "StatefulSet", "Service")


def workloads(docs):
    return {(d["kind"], d["metadata"]["name"]): d for d in docs if d and d.get("kind") in COMPARED_KINDS}


def probe_path(probe):
    return (probe or {}).get("httpGet", {}).get("path")


def shape(obj):
    spec = obj["spec"]
    if obj["kind"] == "Service":
        return {
            "selector": spec.get("selector"),
            "ports": sorted((p.get("name"), p["port"], str(p.get("targetPort"))) for p in spec.get("ports", [])),
        }
    pod = spec["template"]["spec"]
    return {
        "selector": spec["selector"]["matchLabels"],
        "automountServiceAccountToken": pod.get("automountServiceAccountToken"),
        "enableServiceLinks": pod.get("enableServiceLinks"),
        "containers": [
            {
                "name": c["name"],
                "args": c.get("args"),
                "env": [e["name"] for e in c.get("env", [])],
                "ports": sorted((p.get("name"), p["containerPort"]) for p in c.get("ports", [])),
                "liveness": probe_path(c.get("livenessProbe")),
                "readiness": probe_path(c.get("readinessProbe")),
                "mounts": sorted(m["mountPath"] for m in c.get("volumeMounts", [])),
            }
            for c in pod["containers"]
        ],
    }


def has_env(obj, env_name):
    return any(e["name"] == env_name for c in obj["spec"]["template"]["spec"]["containers"] for e in c.get("env", []))


def drop_env(obj, env_name):
    for container in obj["spec"]["template"]["spec"]["containers"]:
        container["env"] = [e for e in container.get("env", []) if e["name"] != env_name]


def diff(chart, operator, prefix=""):
    """(field, chart value, operator value) for every differing leaf of two shapes."""
    if isinstance(chart, dict) and isinstance(operator, dict) and chart.keys() == operator.keys():
        return [d for k in chart for d in diff(chart[k], operator[k], f"{prefix}.{k}" if prefix else k)]
    if isinstance(chart, list) and isinstance(operator, list) and len(chart) == len(operator) and all(
        isinstance(item, dict) for item in chart + operator
    ):
        return [d for i, (a, b) in enumerate(zip(chart, operator)) for d in diff(a, b, f"{prefix}[{i}]")]
    return [] if chart == operator else [(prefix, chart, operator)]


def compare(helm, operator, path):
    resource = yaml.safe_load(pathlib.Path(path).read_text(encoding="utf-8"))
    name = resource["metadata"]["name"]
    namespace = resource["metadata"].get("namespace", "default")
    operator_run = subprocess.run([operator, "render", "-f", str(path)], capture_output=True, text=True)
    if operator_run.returncode != 0:
        return [f"operator render failed: {operator_run.stderr.strip()}"]
    values = dict(resource.get("spec") or {})
    values.pop("suspend", None)
    values["fullnameOverride"] = name
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values_file:
        yaml.safe_dump(values, values_file)
        values_file.flush()
        chart_run = subprocess.run(
            [helm, "template", name, str(ROOT / "charts" / "llm-proxy"), "-n", namespace, "-f", values_file.name],
            capture_output=True, text=True,
        )
    if chart_run.returncode != 0:
        return [f"helm template failed: {chart_run.stderr.strip()}"]
    from_operator = workloads(yaml.safe_load_all(operator_run.stdout))
    from_chart = workloads(yaml.safe_load_all(chart_run.stdout))
    proxy = ("Deployment", name)
    if proxy in from_chart and proxy in from_operator and not has_env(from_chart[proxy], "MANAGEMENT_TOKEN"):
        # By design the operator generates a management token when none is configured (the chart only warns).
        drop_env(from_operator[proxy], "MANAGEMENT_TOKEN")
    differences = []
    for key in sorted(set(from_operator) | set(from_chart)):
        if key not in from_chart:
            differences.append(f"{key[0]}/{key[1]}: only the operator renders it")
        elif key not in from_operator:
            differences.append(f"{key[0]}/{key[1]}: only the chart renders it")
        else:
            for field, want, got in diff(shape(from_chart[key]), shape(from_operator[key])):
                differences.append(f"{key[0]}/{key[1]} {field}: chart {want}, operator {got}")
    return differences


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    helm, operator, files = argv[0], argv[1], argv[2:]
    failed = 0
    for path in files:
        differences = compare(helm, operator, path)
        if differences:
            failed += 1
            print(f"DIFFERS {path}")
            for line in differences:
                print(f"    {line}")
        else:
            print(f"SAME {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

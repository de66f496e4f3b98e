"""Validates custom resources against the openAPIV3Schema of their CustomResourceDefinition.

usage: validate_cr.py CRD_FILE [...] -- CR_FILE [...]

Every document of the CR files whose apiVersion/kind a given CRD defines is checked; other documents are
skipped. Unknown fields are errors (the API server would silently prune them, losing the user's setting),
except below `x-kubernetes-preserve-unknown-fields`. Not checked: CEL `x-kubernetes-validations` (the
operator's tests cover those), defaulting, list-map semantics. Exit status 1 on any invalid resource or when
no resource was checked at all.

Run it with the Python of scripts/tools.sh (it brings jsonschema and PyYAML).
"""

import copy
import sys

import jsonschema
import yaml


def to_json_schema(node):
    """OpenAPI v3 structural schema -> JSON Schema draft 4: nullable and closed objects."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: to_json_schema(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    out.pop("nullable", None)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load_schemas(crd_files):
    schemas = {}
    for path in crd_files:
        with open(path, encoding="utf-8") as handle:
            for doc in yaml.safe_load_all(handle):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
                for version in doc["spec"]["versions"]:
                    schema = to_json_schema(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def main(argv):
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    crd_files, cr_files = argv[:split], argv[split + 1 :]
    schemas = load_schemas(crd_files)
    if not schemas:
        print(f"ERROR no CustomResourceDefinition found in {crd_files}")
        return 1
    checked = invalid = 0
    for path in cr_files:
        with open(path, encoding="utf-8") as handle:
            docs = list(yaml.safe_load_all(handle))
        for doc in docs:
            if not doc:
                continue
            key = (doc.get("apiVersion"), doc.get("kind"))
            schema = schemas.get(key)
            if schema is None:
                continue
            checked += 1
            name = (doc.get("metadata") or {}).get("name")
            errors = []
            if not name:
                errors.append("metadata.name: required")
            body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
            for error in jsonschema.Draft4Validator(schema).iter_errors(body):
                errors.append(f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}")
            if errors:
                invalid += 1
                for error in errors:
                    print(f"ERROR {path} {key[1]}/{name}: {error}")
            else:
                print(f"OK {path} {key[1]}/{name}")
    if checked == 0:
        print(f"ERROR no resource of a kind defined by {crd_files} in {cr_files}")
        return 1
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

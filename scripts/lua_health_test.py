"""Runs ArgoCD resource health checks (health.lua) against their fixtures with a real Lua 5.1 interpreter.

usage: lua_health_test.py LUA RESOURCE_CUSTOMIZATIONS_DIR

For every <group>/<Kind>/health_test.yaml under the directory (ArgoCD's layout), each test's inputPath YAML
is converted to a Lua table bound to `obj`, health.lua runs in an environment holding only the base and table
libraries (what ArgoCD opens without useOpenLibs), and the returned status and message must equal the test's
healthStatus. One line per test; exit status 1 on any mismatch or when no test was found.
"""

import pathlib
import subprocess
import sys

import yaml

RUNNER = """
local chunk = assert(loadfile(%(script)s))
local env = {
  obj = %(obj)s,
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = unpack, table = table,
}
setfenv(chunk, env)
local hs = chunk()
io.write(tostring(hs.status), "\\n", tostring(hs.message or ""))
"""


def to_lua(value):
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "".join(["\"", "".join("\\%03d" % byte for byte in value.encode("utf-8")), "\""])
    if isinstance(value, list):
        return "{" + ", ".join(to_lua(item) for item in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{to_lua(str(k))}] = {to_lua(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot convert {type(value).__name__} to Lua")


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    lua, root = argv[0], pathlib.Path(argv[1])
    total = failed = 0
    for test_file in sorted(root.glob("*/*/health_test.yaml")):
        script = test_file.parent / "health.lua"
        for test in yaml.safe_load(test_file.read_text(encoding="utf-8"))["tests"]:
            total += 1
            fixture = test_file.parent / test["inputPath"]
            obj = yaml.safe_load(fixture.read_text(encoding="utf-8"))
            program = RUNNER % {"script": to_lua(str(script)), "obj": to_lua(obj)}
            run = subprocess.run([lua, "-"], input=program, capture_output=True, text=True)
            want = (test["healthStatus"]["status"], test["healthStatus"].get("message", ""))
            got = tuple(run.stdout.split("\n", 1)) if run.returncode == 0 else ("<error>", run.stderr.strip())
            label = f"{test_file.parent.relative_to(root)} {test['inputPath']}"
            if got == want:
                print(f"  ok   {label}: {got[0]}")
            else:
                failed += 1
                print(f"  FAIL {label}: want {want}, got {got}")
    if total == 0:
        print(f"no health_test.yaml under {root}")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

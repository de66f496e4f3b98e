#!/usr/bin/env python3
"""Fails when docs/security.md names a test that no longer exists.

A test is written `path::name`: for a Rust file, `path` must contain `fn name(`; for a shell or Python
file, `path` must contain `name` as a word (a chart case slug, a function). Run from the repository root.
"""
import pathlib
import re
import sys

DOC = pathlib.Path("docs/security.md")
REFERENCE = re.compile(r"`([\w./-]+\.(?:rs|sh|py))::([\w-]+)`")


def main() -> int:
    text = DOC.read_text(encoding="utf-8")
    references = REFERENCE.findall(text)
    missing = []
    for path, name in references:
        file = pathlib.Path(path)
        if not file.is_file():
            missing.append(f"{path}::{name}: no such file")
            continue
        source = file.read_text(encoding="utf-8")
        pattern = rf"\bfn {re.escape(name)}\s*[(<]" if path.endswith(".rs") else rf"\b{re.escape(name)}\b"
        if not re.search(pattern, source):
            missing.append(f"{path}::{name}: not found in {path}")
    for line in missing:
        print(f"docs/security.md names a missing test: {line}", file=sys.stderr)
    print(f"docs/security.md: {len(references)} tests named, {len(missing)} missing")
    return 1 if missing or not references else 0


if __name__ == "__main__":
    sys.exit(main())

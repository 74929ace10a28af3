#!/usr/bin/env python3
"""Checks that the README's configuration table names every environment
variable the configuration reads (src/server/config/), so the docs cannot
fall behind the code. Provider settings (`var("X")`) are checked as
`OIDC_X`, the default provider's name; the table documents the per-provider
form `OIDC_<NAME>_X` in one row. The log and trace settings, read before
the configuration (src/server/telemetry/: `var("X")`), are checked as they
are named."""

import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "src", "server", "config")
TELEMETRY = os.path.join(REPO, "src", "server", "telemetry")


def read_vars():
    found = set()
    for name in os.listdir(CONFIG):
        if not name.endswith(".rs"):
            continue
        text = open(os.path.join(CONFIG, name), encoding="utf-8").read()
        # Tests name variables too (bad values); only the code above them counts.
        code = text.split("#[cfg(test)]")[0]
        # `r.parse(` / `r.raw(` followed by the variable's literal name.
        for m in re.finditer(r'\br\s*\.(?:parse|raw)\(\s*"([A-Z][A-Z0-9_]+)"', code):
            found.add(m.group(1))
        # A provider's setting: `var("X")` is OIDC_X for the default provider.
        for m in re.finditer(r'\bvar\("([A-Z][A-Z0-9_]+)"\)', code):
            found.add("OIDC_" + m.group(1))
    for name in os.listdir(TELEMETRY):
        if not name.endswith(".rs"):
            continue
        text = open(os.path.join(TELEMETRY, name), encoding="utf-8").read()
        code = text.split("#[cfg(test)]")[0]
        for m in re.finditer(r'\bvar\("([A-Z][A-Z0-9_]+)"\)', code):
            found.add(m.group(1))
    return found


def main():
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    start = readme.index("## Configuration")
    section = readme[start:readme.index("\n## ", start + 1)]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section))
    missing = sorted(read_vars() - documented)
    for var in missing:
        print(f"README Configuration does not document {var}")
    if missing:
        sys.exit(1)
    print(f"README Configuration documents all {len(read_vars())} variables the code reads")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks that the README's Layout section matches the tree under src/.

Every Rust file under src/ must be named in the Layout block (by its file name,
`store.rs`, or, for a `mod.rs`, by its folder, `store/`),
and every `*.rs` file the block names must exist somewhere under src/ (or be a
top-level path such as benches/bff.rs that exists). Exits 1 with the
differences. `make test` and `make lint` run it.
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "..")
SRC = os.path.join(REPO, "src")


def layout_block():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text.split("\n## Layout\n", 1)[1]
    return section.split("```", 2)[1]


def main():
    block = layout_block()
    words = set(re.findall(r"[A-Za-z0-9_./-]+", block))
    names = {w.rstrip(",.:;") for w in words}
    names |= {os.path.basename(n.rstrip("/")) + ("/" if n.endswith("/") else "") for n in names}
    missing = []
    files = []
    for dirpath, _, filenames in os.walk(SRC):
        for f in filenames:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), REPO)
            files.append(rel)
            named = {f, rel}
            if f == "mod.rs":
                named = {os.path.basename(dirpath) + "/", os.path.relpath(dirpath, REPO) + "/"}
            if not (named & names):
                missing.append(rel)
    existing = {os.path.basename(f) for f in files}
    stale = sorted(
        w
        for w in {w.rstrip(",.:;") for w in words if w.rstrip(",.:;").endswith(".rs")}
        if os.path.basename(w) not in existing
        and not os.path.exists(os.path.join(REPO, w))
    )
    for m in sorted(missing):
        print(f"README Layout does not mention {m}")
    for s in stale:
        print(f"README Layout names {s}, which does not exist")
    if missing or stale:
        return 1
    print(f"README Layout names all {len(files)} files under src/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Finds import circles among the modules of src/, from their `use` lines.

Each file under src/ is a module (src/a/mod.rs and src/a.rs are `a`). A file
depends on the modules its `use crate::…`, `use super::…` and `use self::…`
lines name (the longest module prefix of each path that is a file here).
Prints every strongly connected component of more than one module, and exits
1 if there is one. `make test` and `make lint` run it: imports must point one way.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return ()
    return tuple(rel)


def use_paths(text):
    """Every path a `use` declaration names, braces expanded."""
    text = re.sub(r"//[^\n]*", "", text)
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        yield from expand(re.sub(r"\s+", "", m.group(1)))


def expand(tree):
    depth, start = 0, None
    for i, c in enumerate(tree):
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                prefix = tree[:start]
                inner, parts, d, last = tree[start + 1 : i], [], 0, 0
                for j, ch in enumerate(inner):
                    d += ch == "{"
                    d -= ch == "}"
                    if ch == "," and d == 0:
                        parts.append(inner[last:j])
                        last = j + 1
                parts.append(inner[last:])
                for part in parts:
                    if part:
                        yield from expand(prefix + part)
                return
    yield tree.split(" as ")[0]


def main():
    modules = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".rs"):
                path = os.path.join(dirpath, f)
                modules[module_of(path)] = path
    graph = {m: set() for m in modules}
    for mod, path in modules.items():
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        for use in use_paths(text):
            segments = [s for s in use.split("::") if s]
            if not segments:
                continue
            if segments[0] == "crate":
                target = segments[1:]
            elif segments[0] in ("super", "self"):
                base = list(mod)
                # In a.rs or a/mod.rs, `self` is a and `super` is a's parent.
                while segments and segments[0] in ("super", "self"):
                    if segments[0] == "super":
                        base = base[:-1]
                    segments = segments[1:]
                target = base + segments
            else:
                continue
            for n in range(len(target), 0, -1):
                t = tuple(target[:n])
                if t in modules:
                    if t != mod and t != mod[: len(t)]:
                        graph[mod].add(t)
                    break
    cycles = strongly_connected(graph)
    for cycle in cycles:
        names = sorted("::".join(m) for m in cycle)
        print(f"import circle of {len(names)} modules: {', '.join(names)}")
    if cycles:
        return 1
    print(f"no import circle among {len(modules)} modules")
    return 0


def strongly_connected(graph):
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())

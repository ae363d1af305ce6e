#!/usr/bin/env python3
"""Fails when a file of a crate uses another file that, directly or through others, uses it back.

Issue 17's rule: shared types go in the lower file. Reads every `crates/*/src` tree as text: a file's
uses are the `crate::…` and `super::…` paths in its code (comments and its `#[cfg(test)] mod tests`
are left out), each resolved to the file that defines the longest module prefix of the path, or to
the crate's root file when no module matches.
Prints each loop (a strongly connected set of files, with the edges inside it) and exits 1.
"""
import os
import re
import sys


def modules(src_dir):
    # The crate's root file is the module ""; with a library, `main.rs` roots a separate binary
    # crate (it reaches the library by name, not through `crate::`), so the library's root is kept.
    has_lib = os.path.exists(os.path.join(src_dir, "lib.rs"))
    found = {}
    for folder, _, names in os.walk(src_dir):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(path, src_dir)[:-3].replace(os.sep, "::")
            if module.endswith("::mod"):
                module = module[: -len("::mod")]
            if module == "main" and has_lib:
                continue
            if module in ("lib", "main"):
                module = ""
            with open(path, encoding="utf-8") as f:
                text = f.read()
            text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
            found[module] = re.sub(r"//[^\n]*", "", text)
    return found


def uses(module, text, known):
    def resolve(path):
        parts = [p for p in path.split("::") if p]
        for n in range(len(parts), 0, -1):
            candidate = "::".join(parts[:n])
            if candidate in known:
                return candidate
        # An item of the root file itself (`crate::install_crypto_provider`).
        return "" if "" in known else None

    targets = set()
    for base, group in re.findall(r"\bcrate::([a-z_][a-z0-9_:]*?)(?:::\{([^}]*)\})?(?![a-z0-9_:])", text):
        items = [i.strip().split(" ")[0] for i in group.split(",")] if group else [""]
        for item in items:
            full = base if item in ("", "self") else f"{base}::{item}"
            targets.add(resolve(full))
    parent = module.rsplit("::", 1)[0] if "::" in module else ""
    for path in re.findall(r"\bsuper::([a-z_][a-z0-9_:]*)", text):
        targets.add(resolve(f"{parent}::{path}" if parent else path))
    targets.discard(None)
    targets.discard(module)
    return targets


def loops(graph):
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

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
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "crates"
    bad = 0
    for crate in sorted(os.listdir(root)):
        src = os.path.join(root, crate, "src")
        if not os.path.isdir(src):
            continue
        files = modules(src)
        graph = {m: uses(m, t, files) for m, t in files.items()}
        for group in loops(graph):
            bad += 1
            print(f"{crate}: files that use each other: {', '.join(g or 'lib' for g in group)}")
            for m in group:
                inside = sorted(graph[m] & set(group))
                print(f"  {m or 'lib'} uses {', '.join(i or 'lib' for i in inside)}")
    if bad:
        sys.exit(1)
    print("no import loops between files")


if __name__ == "__main__":
    main()

"""The package's layers: every import (module-level, lazy inside functions, and under
``TYPE_CHECKING``) goes down the stack or stays in its own layer, and no modules import
each other in a cycle. Checked by parsing the source, so a lazy import counts as much as
one at the top of a module; the checker is tested on a planted upward import and cycle."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.builders import REPO

PACKAGE = REPO / "attribnet"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "files", "runtime"),  # plumbing: no attribnet imports above errors
    ("config",),  # recipes; imports no torch
    ("data", "metrics", "report"),
    ("models", "losses", "baselines"),
    ("predict",),  # the one inference path
    ("training", "openset"),
    ("index",),
    ("query", "evaluate", "export"),
    ("serve",),
    ("cli", "train"),  # commands; every package's __main__ belongs here too
)
"""Bottom to top: a module may import its own layer and the layers below it."""


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported attribnet module, line) of every import statement in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]  # fmt: skip
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("attribnet"):
                yield target, node.lineno


def layer(module: str) -> int:
    parts = module.split(".")
    if parts[-1] == "__main__":
        return len(LAYERS) - 1
    for i, names in enumerate(LAYERS):
        if len(parts) > 1 and parts[1] in names:
            return i
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def problems(root: Path) -> list[str]:
    """Upward imports and import cycles in the package at ``root``. The root package
    itself (``attribnet/__init__.py``: ``__version__`` and the lazy ``Attributor``) is
    the public face, outside the layers."""
    known = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in known}
    found = []
    for name, path in known.items():
        if name == "attribnet":
            continue
        for target, line in imports(name, path, known):
            if target in (name, "attribnet"):
                continue
            graph[name].add(target)
            if layer(target) > layer(name):
                found.append(f"{path.relative_to(root.parent)}:{line}: {name} imports {target}, "
                             "a layer above it")  # fmt: skip
    found += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_imports_go_down_the_layers_without_cycles():
    assert problems(PACKAGE) == []


def test_the_checker_finds_a_planted_upward_import_and_cycle(tmp_path):
    copy = tmp_path / "attribnet"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    load = copy / "config" / "load.py"
    load.write_text(
        load.read_text() + "\n\ndef _planted():\n    from attribnet.cli import run_cli\n"
    )
    found = problems(copy)
    assert any("config/load.py" in p and "attribnet.cli" in p for p in found), found
    atomic = copy / "files" / "atomic.py"  # files.jsonl imports files.atomic
    atomic.write_text(atomic.read_text() + "\nif False:\n    from attribnet.files import jsonl\n")
    assert any(p.startswith("import cycle") for p in problems(copy))


def test_config_imports_without_torch():
    code = "import sys, attribnet.config; print(sorted(m for m in ('torch', 'cv2', 'av', 'albumentations') if m in sys.modules))"  # noqa: E501
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)  # fmt: skip
    assert out.stdout.strip() == "[]"

"""The package's layers, checked from its source: every import (function-level ones included)
points down, none closes a cycle, and no module imports another module's ``_private`` names.

The layers, bottom up (DESIGN.md): base utilities -> ``nn`` / ``audio`` -> ``model`` -> the
``runtime`` / ``stream`` and training -> ``weights`` / ``codec`` -> the ``api`` facade and the evaluator
-> ``demo`` -> ``cli``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dac_jax"

# rank of each top-level part of the package: a module may import its own part or lower ranks
RANKS = {
    "errors": 0, "options": 0, "fileio": 0, "version": 0, "tokens": 0, "quiet_tf": 0, "memory": 0,
    "nn": 1, "audio": 1,
    "model": 2,
    "guard": 3, "runtime": 3, "stream": 3, "train": 3,
    "weights": 4, "codec": 4,
    "api": 5, "evaluate": 5,
    "demo": 6,
    "cli": 7, "__main__": 7, "__init__": 7,
}
# imports the ranks allow but the design does not: codec and training know nothing of each other
FORBIDDEN = {("codec", "train"), ("train", "codec"), ("train", "api"), ("model", "audio.io")}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str, int]]:
    """``(module imported, name taken from it or "", line)`` for every import in the file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, "", node.lineno) for alias in node.names if alias.name.startswith("dac_jax")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("dac_jax"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub, "", node.lineno) if sub in MODULES else (base, alias.name, node.lineno))
    return out


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _edges() -> dict[str, set[str]]:
    return {name: {target for target, _, _ in _imports(name, path) if target != name} for name, path in MODULES.items()}


def test_the_walk_sees_the_whole_package():
    assert {"dac_jax.runtime", "dac_jax.api", "dac_jax.codec.chunked", "dac_jax.cli"} <= set(MODULES)
    edges = _edges()
    assert "dac_jax.runtime" in edges["dac_jax.codec.chunked"]  # a real edge is found
    assert all(target in MODULES for targets in edges.values() for target in targets), "an import of a missing module"


def test_no_import_cycle():
    edges = _edges()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_imports_point_down_the_layers():
    wrong = []
    for name, path in MODULES.items():
        part = _part(name)
        for target, _, line in _imports(name, path):
            other = _part(target)
            sub = ".".join(target.split(".")[1:3])
            if other != part and (RANKS[other] > RANKS[part] or (part, other) in FORBIDDEN or (part, sub) in FORBIDDEN):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {part} imports {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_private_name_crosses_a_module():
    crossing = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: from {target} import {taken}"
        for name, path in MODULES.items()
        for target, taken, line in _imports(name, path)
        if taken.startswith("_") and not taken.startswith("__") and target != name
    ]
    crossing += [
        f"{path.relative_to(PACKAGE.parent)}:{line}: import of the private module {target}"
        for name, path in MODULES.items()
        for target, _, line in _imports(name, path)
        if any(p.startswith("_") and not p.startswith("__") for p in target.split("."))
    ]
    assert not crossing, "private names imported across modules:\n" + "\n".join(crossing)


def test_the_version_is_stated_once():
    import tomllib

    import dac_jax
    from dac_jax import version

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert dac_jax.__version__ == version.__version__
    stated = [p for p in PACKAGE.rglob("*.py") if "__version__ =" in p.read_text()]
    assert stated == [PACKAGE / "version.py"]

"""The import rules of DESIGN.md §2, held by parsing every module's imports."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mmoe"
# layer -> layers it must never import (imports flow cli -> experiments -> train -> ...)
FORBIDDEN = {
    "nn": {"config", "data", "models", "train", "experiments", "cli", "objectives", "metrics"},
    # native: the C++ kernels' loader; torch and the standard library only
    "native": {"config", "data", "nn", "models", "train", "experiments", "cli", "objectives",
               "metrics", "weighting", "gate_health", "inspect"},
    "models": {"data", "train", "experiments", "cli"},
    "data": {"train", "experiments", "cli", "models"},
    "train": {"experiments", "cli"},
    "config": {"data", "nn", "models", "train", "experiments", "cli"},
    "objectives": {"train", "experiments", "cli", "data"},
    "metrics": {"train", "experiments", "cli", "data"},
    "experiments": {"cli"},
}


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    pkg = path.relative_to(SRC.parent).with_suffix("").parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[: len(pkg) - node.level + 1])
                mod = base + (node.module.split(".") if node.module else [])
                names = [mod + [a.name] for a in node.names] if not node.module else [mod]
            else:
                names = [node.module.split(".")] if node.module else []
            yield from names
        elif isinstance(node, ast.Import):
            yield from (a.name.split(".") for a in node.names)


FILES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_flow_one_way(path):
    layer = _layer(path)
    for parts in _imports(path):
        if parts[0] != "mmoe" or len(parts) < 2:
            continue
        target = parts[1]
        assert target not in FORBIDDEN.get(layer, set()), (
            f"{path.relative_to(SRC)} ({layer}) imports mmoe.{target}")
    if layer == "nn":
        top = {p[0] for p in _imports(path)}
        assert top <= {"torch", "mmoe", "__future__", "math", "typing", "collections"}, top


def test_only_distributed_module_imports_torch_distributed():
    for path in FILES:
        if path.name == "distributed.py":
            continue
        for parts in _imports(path):
            assert parts[:2] != ["torch", "distributed"], path

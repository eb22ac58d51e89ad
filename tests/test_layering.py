"""The import rules of docs/architecture.md, held by parsing every module's imports.

Each package (or top-level module) may import only the mmoe parts listed for it; a package
missing from the table fails the test, so a new package must state its place.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mmoe"
BASE = {"_checks", "_fileio", "_progress", "_version", "config"}  # the foundation, below everything
ALLOWED = {
    "_checks": set(),
    "_fileio": set(),
    "_version": set(),
    "_progress": set(),
    "config": {"_checks"},
    "ops": set(),  # imports no other part of mmoe
    "nn": {"ops"},  # torch blocks: no config, no files
    "models": {"nn", "ops", "config", "_checks"},
    "objectives": {"config", "_checks"},
    "metrics": {"config", "_checks"},
    "diagnostics": {"_checks", "_fileio", "config"},
    "data": BASE | {"ops"},
    "train": BASE | {"ops", "nn", "models", "data", "objectives", "metrics", "diagnostics"},
    "app": BASE | {"ops", "models", "data", "metrics", "diagnostics", "train"},
    "experiments": BASE | {"ops", "models", "data", "objectives", "metrics", "diagnostics",
                           "train", "app"},
    "cli": BASE | {"ops", "models", "data", "train", "app", "experiments"},
    "__init__": {"_version", "config", "models", "app"},
    "__main__": {"cli"},
}
# nn is pure torch; ops is torch and the standard library (its loader builds C++)
NN_IMPORTS = {"torch", "mmoe", "__future__", "math", "typing", "collections"}
DATA_LIBRARIES = {"numpy", "pandas", "pyarrow", "sklearn", "scipy", "matplotlib", "tqdm"}


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
    assert layer in ALLOWED, f"{layer} has no row in ALLOWED (docs/architecture.md)"
    for parts in _imports(path):
        if parts[0] != "mmoe" or len(parts) < 2 or parts[1] == layer:
            continue
        assert parts[1] in ALLOWED[layer], (
            f"{path.relative_to(SRC)} ({layer}) imports mmoe.{parts[1]}")
    top = {p[0] for p in _imports(path)}
    if layer == "nn":
        assert top <= NN_IMPORTS, top
    if layer == "ops":
        assert not top & DATA_LIBRARIES, top


def test_every_package_has_a_row():
    packages = {_layer(p) for p in FILES}
    assert packages <= set(ALLOWED), sorted(packages - set(ALLOWED))


def test_only_distributed_module_imports_torch_distributed():
    for path in FILES:
        if path.name == "distributed.py":
            continue
        for parts in _imports(path):
            assert parts[:2] != ["torch", "distributed"], path


def test_the_table_matches_the_architecture_page():
    """docs/architecture.md lists every package with the layers it may import."""
    page = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    for layer, allowed in ALLOWED.items():
        if layer.startswith("__"):
            continue
        line = next((row for row in page.splitlines() if row.startswith(f"| `{layer}`")), None)
        assert line is not None, f"docs/architecture.md has no row for {layer}"
        listed = {name.strip(" `") for name in line.split("|")[3].split(",") if name.strip()}
        assert listed - {"—"} == allowed, (layer, listed, allowed)

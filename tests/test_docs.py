"""The documentation names tests that exist: every test file and test function that
docs/reliability.md gives as holding a guarantee is in the suite."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test")}


def test_reliability_page_names_existing_tests():
    page = (ROOT / "docs" / "reliability.md").read_text()
    refs = re.findall(r"`([\w/]+\.py)((?:::[\w…*]+)?)`", page)
    assert len(refs) > 30
    for file, name in refs:
        path = ROOT / "tests" / file
        assert path.is_file(), f"docs/reliability.md names a missing test file {file}"
        if name:
            stem = name[2:].rstrip("…*")
            names = _test_names(path)
            assert any(n == stem or n.startswith(stem) for n in names), (file, name)

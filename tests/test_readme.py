"""The README's examples run as written: the Python API example, the quick start's commands
on the generated demo table, the estimator example, and the commands of "Your own data"."""

import contextlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mmoe.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", TEXT, flags=re.S)


def _block(lang: str, containing: str) -> str:
    found = [b for b in _blocks(lang) if containing in b]
    assert len(found) == 1, f"README: expected one {lang} block with {containing!r}"
    return found[0]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_block("python", "build_model("), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.history[-1]["valid"]["clicked"]["auc"] > 0.8
    assert namespace["probs"]["bought"].shape == (1000,)
    assert (tmp_path / "runs" / "demo" / "checkpoint.pt").exists()


def _run_bash(block: str, cwd: Path) -> None:
    """Run a README bash block line by line (continuations joined): a plain ``mmoe ...``
    line through the CLI's entry point in this process (as the ``mmoe`` script would, without
    a new interpreter per line), a line with shell syntax through bash with this
    environment's ``mmoe`` first on the PATH; the demo table smaller, for time."""
    script = block.replace("\\\n", " ").replace("--out demo ", "--rows 1500 --out demo ")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for line in filter(None, (ln.split("  #")[0].strip() for ln in script.splitlines())):
        if line.startswith("mmoe ") and not set(line) & set("<>|&;$`"):
            with _cwd(cwd), pytest.raises(SystemExit) as done:
                main(shlex.split(line)[1:])
            assert done.value.code in (0, None), f"README command failed: {line}"
            continue
        proc = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"README command failed: {line}\n{proc.stderr[-2000:]}"


@contextlib.contextmanager
def _cwd(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("readme")
    _run_bash(_block("bash", "mmoe data generate table"), cwd)
    return cwd


def test_quick_start_commands_run_and_print_the_schema(quick_start):
    demo = {p.name for p in (quick_start / "demo").iterdir()}
    assert {"train.csv", "valid.csv", "test.csv"} <= demo
    assert (quick_start / "runs" / "demo-test.json").is_file()
    pred = pd.read_csv(quick_start / "runs" / "demo-predictions.csv")
    assert {"customer_id", "churned", "churned_label", "spend", "segment"} <= set(pred.columns)
    shown = _block("text", "column  kind")  # the schema the README shows is what train prints
    schema = (quick_start / "runs" / "demo" / "schema.json").read_text()
    for column in re.findall(r"^(\w+) +(?:numeric|categorical)", shown, flags=re.M):
        assert f'"{column}"' in schema


def test_estimator_example_runs(quick_start, monkeypatch, capsys):
    monkeypatch.chdir(quick_start)
    namespace: dict = {}
    exec(compile(_block("python", "MultiTaskEstimator"), "README.md", "exec"), namespace)
    est = namespace["est"]
    assert [t.kind for t in est.tasks_] == ["binary", "regression", "multiclass"]
    assert 0.2 < est.score(namespace["test"][namespace["X"].columns],
                           namespace["test"][namespace["labels"]]) < 1
    assert (quick_start / "runs" / "demo-estimator" / "model.pt").is_file()


def test_own_data_and_export_commands_run(quick_start):
    _run_bash(_block("bash", "mmoe config init"), quick_start)
    serving = _block("bash", "mmoe serve runs/demo")  # all but the server itself
    _run_bash("\n".join(ln for ln in serving.splitlines() if not ln.startswith("mmoe serve")),
              quick_start)
    assert (quick_start / "runs" / "demo-raw.onnx").is_file()
    runs = quick_start / "runs"
    assert (runs / "demo.onnx").is_file() and (runs / "demo-gates").is_dir()
    assert pd.read_parquet(runs / "demo-predictions.parquet").shape[0] == 150
    assert (runs / "demo-weighted" / "model.pt").is_file()

"""Small generated tables for the own-data CLI and facade tests."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch


def make_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Mixed-type rows with missing values and three learnable tasks of each kind."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    city = rng.choice(["paris", "rome", "oslo"], size=n)
    effect = pd.Series(city).map({"paris": 1.0, "rome": -1.0, "oslo": 0.0}).to_numpy()
    buys = np.where(x1 + effect + 0.3 * rng.normal(size=n) > 0, "yes", "no")
    spend = 1000.0 + 250.0 * (x2 - x1) + 10.0 * rng.normal(size=n)
    segment = np.select([x2 > 0.5, x2 < -0.5], ["high", "low"], "mid")
    x2_obs = np.where(rng.random(n) < 0.1, np.nan, x2)
    city_obs = np.where(rng.random(n) < 0.05, None, city)
    return pd.DataFrame({"user_id": np.arange(n) + 10_000, "x1": x1, "x2": x2_obs,
                         "city": city_obs, "w": rng.uniform(0.5, 1.5, n), "buys": buys,
                         "spend": spend, "segment": segment})


TASK_FLAGS = ["--task", "buys:binary:yes", "--task", "spend:regression",
              "--task", "segment:multiclass"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tables(tmp_path_factory) -> dict[str, Path]:
    """train.csv, valid.parquet, test.csv.gz, test.parquet in a session directory."""
    d = tmp_path_factory.mktemp("tables")
    train, valid, test = make_table(600, 0), make_table(200, 1), make_table(150, 2)
    paths = {"train": d / "train.csv", "valid": d / "valid.parquet",
             "test": d / "test.csv.gz", "test_parquet": d / "test.parquet",
             "train_parquet": d / "train.parquet"}
    train.to_csv(paths["train"], index=False)
    train.to_parquet(paths["train_parquet"], index=False)
    valid.to_parquet(paths["valid"], index=False)
    test.to_csv(paths["test"], index=False)
    test.to_parquet(paths["test_parquet"], index=False)
    return paths


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """Run ``mmoe`` in-process; returns (exit code, stdout, stderr)."""
    from mmoe.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(argv, capsys, *needles) -> str:
    """Run ``mmoe``, expecting a user error: exit 2, one ``mmoe: error:`` line holding every
    needle; returns the line."""
    code, _, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mmoe: error: "), (code, err)
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> dict[str, Path]:
    """A model directory trained once (``dir``, MMoE, two tasks) on ``data`` (150 rows)."""
    from mmoe.app.fit import train_model_dir
    from mmoe.app.spec import build_run_spec

    root = tmp_path_factory.mktemp("small_model")
    data = root / "rows.csv"
    make_table(150, seed=4).to_csv(data, index=False)
    spec = build_run_spec(train=str(data), tasks=["buys:binary:yes", "spend:regression"],
                          id_columns=["user_id"], epochs=1, batch_size=32, threads=1)
    train_model_dir(spec, root / "m", progress=False)
    return {"dir": root / "m", "data": data}


@pytest.fixture
def model_copy(small_model, tmp_path) -> Path:
    """A fresh copy of ``small_model``'s directory for one test to change."""
    import shutil

    return Path(shutil.copytree(small_model["dir"], tmp_path / "m"))


@pytest.fixture
def mounts(tmp_path):
    """``mount(name, options)``: a tmpfs at ``tmp_path / name`` (skips where mounting is not
    allowed), unmounted after the test."""
    import shutil
    import subprocess

    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    made = []

    def mount(name, options):
        target = tmp_path / name
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        made.append(target)
        return target

    yield mount
    for target in made:
        subprocess.run(["umount", str(target)], check=False)


def fill(directory) -> None:
    """Fill the file system of ``directory`` up (a file ``filler`` in it)."""
    with open(directory / "filler", "wb", buffering=0) as fh, pytest.raises(OSError):
        while True:
            fh.write(b"\0" * 4096)

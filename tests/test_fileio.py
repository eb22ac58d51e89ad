"""The one atomic writer: files and directories get the mode the umask allows, a failure leaves
the destination as it was, and every writer of the package goes through it."""

import os
import stat

import pandas as pd
import pytest
import torch

from mmoe import TaskSpec, build_model
from mmoe._fileio import AtomicFile, atomic_dir, write_json, write_text
from mmoe.data.encoders import TableEncoder
from mmoe.data.writers import write_table
from mmoe.train.checkpoint import save_checkpoint
from mmoe.train.model_dir import save_model_dir


@pytest.fixture
def umask():
    """Set the process umask for a test, restoring it afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_mask(mask):
        os.umask(mask)

    yield set_mask
    os.umask(saved)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"),
                         [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)])
def test_modes_follow_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    assert _mode(write_text(tmp_path / "a.txt", "x")) == file_mode
    with atomic_dir(tmp_path / "d") as stage:
        write_json(stage / "b.json", {"a": 1})
        (stage / "sub").mkdir()
    assert _mode(tmp_path / "d") == dir_mode
    assert _mode(tmp_path / "d" / "b.json") == file_mode
    assert _mode(tmp_path / "d" / "sub") == dir_mode


def test_every_writer_of_the_package_gives_0644_under_umask_022(tmp_path, umask):
    umask(0o022)
    df = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0, 1, 0, 1]})
    enc = TableEncoder([TaskSpec("y")]).fit(df)
    model = build_model("mmoe", enc.input_spec(), enc.tasks)
    written = [save_checkpoint(tmp_path / "c.pt", model), write_table(df, tmp_path / "t.csv"),
               write_table(df, tmp_path / "t.parquet")]
    out = save_model_dir(tmp_path / "m", model, enc, {}, {})
    written += [p for p in out.rglob("*") if p.is_file()]
    assert _mode(out) == 0o755
    assert {p.name: _mode(p) for p in written} == {p.name: 0o644 for p in written}


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_text(tmp_path / "keep.txt", "old")
    with pytest.raises(RuntimeError), AtomicFile(target) as f:
        f.handle.write(b"half of the new")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_a_failed_directory_leaves_the_old_one(tmp_path):
    with atomic_dir(tmp_path / "d") as stage:
        write_text(stage / "v1.txt", "1")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "d", replace=True) as stage:
        write_text(stage / "v2.txt", "2")
        raise RuntimeError("killed")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["v1.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no staging folder left
    with pytest.raises(FileExistsError), atomic_dir(tmp_path / "d"):
        pass  # not empty and not replace: refused, old kept
    assert (tmp_path / "d" / "v1.txt").read_text() == "1"


def test_torch_save_through_the_writer_loads_back(tmp_path):
    with AtomicFile(tmp_path / "t.pt") as f:
        torch.save({"w": torch.arange(3)}, f.handle)
    assert torch.equal(torch.load(tmp_path / "t.pt", weights_only=True)["w"], torch.arange(3))


# ---- strict JSON, leftovers of killed writers, the run lock ---------------------------------
def _dead_pid():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_json_is_strict_nan_and_inf_are_null(tmp_path):
    import json

    import numpy as np

    from mmoe._fileio import json_text

    data = {"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": (2, "x"),
            "d": np.float32("nan"), "e": np.float64(0.25)}
    assert json.loads(json_text(data, indent=None)) == {
        "a": None, "b": [None, None, 1.5], "c": [2, "x"], "d": "nan", "e": 0.25}
    written = write_json(tmp_path / "m.json", data, default=lambda v: v.item())
    assert "NaN" not in written.read_text() and "Infinity" not in written.read_text()
    assert json.loads(written.read_text())["d"] is None


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    from mmoe._fileio import clean_leftovers

    dead, live = _dead_pid(), os.getpid()
    names = [f".out.csv.tmp-{dead}-a.tmp", f".out.csv.probe-{dead}-b",
             f".out.csv.tmp-{live}-c.tmp", ".out.csv.notes", f".other.tmp-{dead}-d.tmp",
             f".out.csvx.tmp-{dead}-e.tmp"]
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / f".out.csv.tmp-{dead}-f").mkdir()  # a staging directory
    (tmp_path / f".out.csv.tmp-{dead}-f" / "part").write_text("x")
    removed = clean_leftovers(tmp_path / "out.csv")
    assert sorted(p.name for p in removed) == sorted(
        [names[0], names[1], f".out.csv.tmp-{dead}-f"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])


def test_a_directory_moved_aside_by_a_killed_replace_comes_back(tmp_path):
    from mmoe._fileio import clean_leftovers

    dead = _dead_pid()
    old = tmp_path / f".d.old-{dead}-x"
    old.mkdir()
    (old / "dir").mkdir()
    write_text(old / "dir" / "v1.txt", "1")
    clean_leftovers(tmp_path / "d")  # `d` is missing: the old one is put back
    assert (tmp_path / "d" / "v1.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    old.mkdir()
    (old / "dir").mkdir()
    write_text(old / "dir" / "v0.txt", "0")
    with atomic_dir(tmp_path / "d", replace=True) as stage:  # `d` exists: the old one goes
        write_text(stage / "v2.txt", "2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["v2.txt"]


def test_a_failed_final_rename_puts_the_old_directory_back(tmp_path, monkeypatch):
    import mmoe._fileio as fileio

    with atomic_dir(tmp_path / "d") as stage:
        write_text(stage / "v1.txt", "1")
    real = os.replace

    def fails_for_the_stage(src, dst):
        if ".d.tmp-" in str(src):
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", fails_for_the_stage)
    with pytest.raises(OSError, match="Input/output"), \
            atomic_dir(tmp_path / "d", replace=True) as stage:
        write_text(stage / "v2.txt", "2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert (tmp_path / "d" / "v1.txt").read_text() == "1"


def test_locked_dir_is_exclusive_and_keeps_what_it_holds(tmp_path):
    from mmoe._fileio import locked_dir

    with locked_dir(tmp_path / "run") as held:
        with pytest.raises(BlockingIOError, match="locked by another process"), \
                locked_dir(tmp_path / "run"):
            pass
        write_text(held / "checkpoint.pt", "state")
    assert (tmp_path / "run" / "checkpoint.pt").read_text() == "state"  # kept: not empty
    with locked_dir(tmp_path / "run"):  # released with the block
        pass

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
from mmoe.data.readers import write_table
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

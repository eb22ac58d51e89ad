"""Every output appears whole or not at all: a full disk or a failure part-way leaves the
previous output as it was and no empty or temporary file; `mmoe inspect`'s five files are one
directory transaction; what a killed writer left beside an output is cleaned up by the next
one (an old model directory moved aside is put back)."""

import json
import subprocess
import sys

import pytest

import mmoe.app.gate_report as gate_report
from mmoe._fileio import write_text
from mmoe.train.model_dir import read_manifest

from .conftest import fill, one_line_error, run_cli

REPORT = ["experts.csv", "gate_health.json", "gates.csv", "gates.md", "gates.png"]


def _files(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dead_pid():
    """The pid of a process that has exited."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_evaluate_json_on_a_full_disk_leaves_nothing(small_model, mounts, capsys):
    full = mounts("full", "size=256k")
    (full / "m.json").write_text("previous\n")
    fill(full)
    one_line_error(["evaluate", small_model["dir"], small_model["data"], "--json",
                    full / "m.json"], capsys, "No space left on device")
    assert (full / "m.json").read_text() == "previous\n"
    assert sorted(p.name for p in full.iterdir()) == ["filler", "m.json"]
    one_line_error(["evaluate", small_model["dir"], small_model["data"], "--json",
                    full / "new.json"], capsys, "No space left on device")
    assert sorted(p.name for p in full.iterdir()) == ["filler", "m.json"]


def test_inspect_on_a_full_disk_keeps_the_previous_report(small_model, mounts, capsys):
    full = mounts("full", "size=512k")
    args = ["inspect", small_model["dir"], "--data", small_model["data"], "--out",
            full / "gates"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    before = _files(full / "gates")
    assert sorted(before) == REPORT and all(before.values())
    fill(full)
    one_line_error(args, capsys, "No space left on device")
    assert _files(full / "gates") == before
    assert sorted(p.name for p in full.iterdir()) == ["filler", "gates"]


def test_inspect_failing_part_way_keeps_the_previous_report(small_model, tmp_path, capsys,
                                                            monkeypatch):
    out = tmp_path / "gates"
    args = ["inspect", small_model["dir"], "--data", small_model["data"], "--out", out]
    assert run_cli(args, capsys)[0] == 0
    before = _files(out)

    def dies(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gate_report, "_markdown", dies)  # after gates.png and gates.csv
    one_line_error(args, capsys, "No space left on device")
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gates"]
    monkeypatch.undo()
    (out / "gates.md").unlink()  # a report missing a file is still a report: replaced whole
    assert run_cli(args, capsys)[0] == 0
    assert sorted(_files(out)) == REPORT


def test_inspect_never_replaces_a_folder_it_did_not_write(small_model, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "paper.tex").write_text("mine\n")
    one_line_error(["inspect", small_model["dir"], "--data", small_model["data"], "--out",
                    out], capsys, f"--out '{out}'", "'paper.tex'", "mmoe inspect did not write")
    assert _files(out) == {"paper.tex": b"mine\n"}
    (out / "paper.tex").unlink()  # empty: used
    assert run_cli(["inspect", small_model["dir"], "--data", small_model["data"], "--out",
                    out], capsys)[0] == 0
    assert sorted(_files(out)) == REPORT


def test_a_model_dir_moved_aside_by_a_killed_replace_is_restored(small_model, model_copy,
                                                                  dead_pid, capsys):
    before = _files(model_copy)
    root = model_copy.parent
    # killed between moving the old directory aside and renaming the new one into place
    old = root / f".m.old-{dead_pid}-abc123"
    old.mkdir()
    model_copy.rename(old / "dir")
    stage = root / f".m.tmp-{dead_pid}-def456"
    stage.mkdir()
    (stage / "model.pt").write_bytes(b"half")
    args = ["train", "--train", small_model["data"], "--task", "buys:binary:yes", "--epochs",
            "1", "--threads", "1", "--out", model_copy]
    one_line_error(args, capsys, "already exists")  # the old model is back, and kept
    assert _files(model_copy) == before and read_manifest(model_copy)
    assert sorted(p.name for p in root.iterdir()) == ["m"]
    # killed after the new directory was in place, while removing the old one
    old.mkdir()
    (old / "dir").mkdir()
    (old / "dir" / "model.pt").write_bytes(b"the previous model")
    code, _, err = run_cli([*args, "--overwrite"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in root.iterdir()) == ["m"]


def test_temporary_files_of_a_killed_writer_are_removed_by_the_next(small_model, tmp_path,
                                                                     dead_pid, capsys):
    out = tmp_path / "m.json"
    dead = tmp_path / f".m.json.tmp-{dead_pid}-x1y2.tmp"
    dead.write_text("{")
    alive_proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = tmp_path / f".m.json.tmp-{alive_proc.pid}-x3y4.tmp"
        alive.write_text("{")  # a writer still at work: its file is left alone
        other = tmp_path / ".m.json.notes"
        other.write_text("not ours")
        code, _, err = run_cli(["evaluate", small_model["dir"], small_model["data"], "--json",
                                out], capsys)
        assert code == 0, err
        assert json.loads(out.read_text())["buys"]["n"] == 150
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [alive.name, other.name, "m.json"])
    finally:
        alive_proc.kill()
        alive_proc.wait(30)
    write_text(out, "{}")  # the writer is dead now: its file goes at the next write
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, "m.json"])

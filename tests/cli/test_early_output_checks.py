"""`mmoe train` checks its --out before any data is read: symbolic links, a run already writing
the same --out (a lock held for the run, released when its process dies, even by SIGKILL)."""

import os
import signal
import subprocess
import sys
import time

import pytest

import mmoe.app.tables as run_tables
from mmoe._fileio import locked_dir
from mmoe.app.fit import partial_dir
from mmoe.train.model_dir import load_model_dir, read_manifest

from .conftest import make_table, one_line_error, run_cli


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "rows.csv"
    make_table(60, seed=5).to_csv(path, index=False)
    return path


@pytest.fixture
def no_reading(monkeypatch):
    """Fail the test if any data is read (the check must come first)."""
    def boom(*a, **k):
        raise AssertionError("data was read before --out was checked")

    monkeypatch.setattr(run_tables, "read_table", boom)
    monkeypatch.setattr(run_tables, "iter_table", boom)


def _train(data, out, *extra):
    return ["train", "--train", data, "--task", "buys:binary:yes", "--epochs", "1",
            "--batch-size", "16", "--threads", "1", "--out", out, *extra]


def test_out_a_link_to_an_empty_directory_is_written_through(data, tmp_path, capsys):
    target = tmp_path / "real"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    code, _, err = run_cli(_train(data, link), capsys)
    assert code == 0, err
    assert link.is_symlink() and os.path.realpath(link) == str(target)
    assert read_manifest(target)["format"] == "mmoe-model-dir"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real", "rows.csv"]


@pytest.mark.parametrize("kind", ["dangling", "to a file", "loop"])
def test_out_a_bad_link_is_refused_before_reading(data, tmp_path, capsys, no_reading, kind):
    link = tmp_path / "link"
    if kind == "dangling":
        link.symlink_to(tmp_path / "nowhere")
    elif kind == "to a file":
        link.symlink_to(data)
    else:
        link.symlink_to(link)
    one_line_error(_train(data, link), capsys, f"--out '{link}' is a symbolic link")
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "rows.csv"]


def test_a_second_run_on_one_out_is_refused_at_once(data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "m"
    first = subprocess.Popen([sys.executable, "-m", "mmoe", *map(str, _train(data, out)[:-2]),
                              "--epochs", "100000", "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not partial_dir(out).exists() and first.poll() is None:
            assert time.monotonic() < deadline, "the first run never started"
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read().decode()
        with monkeypatch.context() as m:
            def boom(*a, **k):
                raise AssertionError("data was read before the lock was taken")

            m.setattr(run_tables, "read_table", boom)
            started = time.monotonic()
            one_line_error(_train(data, out, "--overwrite"), capsys, "another `mmoe train`",
                           f"'{out}'")
            assert time.monotonic() - started < 10
        assert first.poll() is None  # the first run goes on undisturbed
    finally:
        first.kill()  # SIGKILL: the lock dies with the process
        first.wait(30)
    assert first.returncode == -signal.SIGKILL
    code, _, err = run_cli(_train(data, out, "--overwrite"), capsys)
    assert code == 0, err
    assert load_model_dir(out).metrics["history"][-1]["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "rows.csv"]


def test_a_held_lock_refuses_a_run_and_leaves_nothing_once_released(data, tmp_path, capsys,
                                                                      no_reading):
    out = tmp_path / "m"
    with locked_dir(partial_dir(out)) as held:
        assert held == partial_dir(out) and held.is_dir()
        one_line_error(_train(data, out, "--overwrite"), capsys, "another `mmoe train`")
        assert held.is_dir()  # the refused run did not touch the holder's directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]  # empty: removed


def test_lock_held_by_a_sigkilled_process_is_released(data, tmp_path, capsys):
    out = tmp_path / "m"
    partial = partial_dir(out)
    partial.mkdir()
    (partial / "checkpoint.pt").write_bytes(b"left by a killed run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
         "os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); "
         "time.sleep(120)", str(partial)], stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"locked"
    one_line_error(_train(data, out, "--resume"), capsys, "another `mmoe train`",
                   str(partial))
    assert (partial / "checkpoint.pt").read_bytes() == b"left by a killed run"
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    # the holder is gone: --resume now reaches the checkpoint (and reports it damaged)
    one_line_error(_train(data, out, "--resume"), capsys, "checkpoint.pt",
                   "cannot be read safely")
    code, _, err = run_cli(_train(data, out, "--overwrite"), capsys)
    assert code == 0, err
    assert not partial.exists() and read_manifest(out)


def test_out_a_mount_point_is_refused_before_reading(data, mounts, capsys, no_reading):
    point = mounts("mnt", "size=1m")  # empty: it would fail only at the final rename
    one_line_error(_train(data, point), capsys, f"--out '{point}' is a mount point",
                   "give a path inside it")
    assert list(point.iterdir()) == []

"""An output that cannot be written is reported before any work starts: one line, exit 2.

Tests run as root here, where chmod does not stop writes; the unwritable places are a path
below a regular file (fails for everyone) and, where mounting is allowed, a read-only and a
full tmpfs.
"""

import pytest

import mmoe.app.tables as own_data
from cli import conftest as cli_conftest
from mmoe import _checks
from mmoe.cli import main

mounts = cli_conftest.mounts  # the tmpfs fixture


def _run(argv, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmoe: error: "), err
    return lines[0]


@pytest.fixture
def no_reading(monkeypatch):
    """Fail the test if any data is read (the check must come first)."""
    def boom(*a, **k):
        raise AssertionError("data was read before the output was checked")

    monkeypatch.setattr(own_data, "read_table", boom)
    monkeypatch.setattr(own_data, "iter_table", boom)


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("x,y\n1,0\n2,1\n3,0\n4,1\n")
    return path


def test_out_below_a_regular_file(tmp_path, data, capsys, no_reading):
    (tmp_path / "file").write_text("x")
    for stream in ([], ["--stream"]):
        line = _run(["train", "--train", data, "--task", "y:binary", "--out",
                     tmp_path / "file" / "sub" / "m", *stream], capsys)
        assert f"'{tmp_path / 'file'}' is a file, not a directory" in line
    assert (tmp_path / "file").read_text() == "x"


def test_read_only_file_system(mounts, data, capsys, no_reading):
    ro = mounts("ro", "size=64k,ro")
    line = _run(["train", "--train", data, "--task", "y:binary", "--out", ro / "m"], capsys)
    assert "cannot be written (Read-only file system" in line
    line = _run(["train", "--train", data, "--task", "y:binary", "--out", ro / "a" / "m"],
                capsys)
    assert "Read-only file system" in line


def test_full_file_system(mounts, data, capsys, no_reading):
    full = mounts("full", "size=64k")
    with open(full / "filler", "wb", buffering=0) as fh, pytest.raises(OSError):
        while True:  # fill it up
            fh.write(b"\0" * 4096)
    line = _run(["train", "--train", data, "--task", "y:binary", "--out", full / "m"], capsys)
    assert "No space left on device" in line
    assert sorted(p.name for p in full.iterdir()) == ["filler"]  # the probe was removed


@pytest.mark.parametrize("argv", [
    ["reproduce", "synthetic", "--runs", "1", "--steps", "1", "--out"],
    ["reproduce", "census", "--runs", "1", "--data-dir", "/nonexistent", "--out"],
    ["tune", "--model", "mmoe", "--trials", "1", "--data-dir", "/nonexistent", "--out"],
])
def test_reproduce_and_tune_check_their_output_first(tmp_path, capsys, argv):
    (tmp_path / "file").write_text("x")
    line = _run([*argv, tmp_path / "file" / "out"], capsys)
    assert "is a file, not a directory" in line  # not the missing data: checked first


def test_writable_dir_probe_leaves_nothing(tmp_path):
    assert _checks.writable_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a").is_dir() and not list((tmp_path / "a").iterdir())
    (tmp_path / "a" / "b").mkdir()
    _checks.writable_dir(tmp_path / "a" / "b")  # an existing directory: probed inside
    assert not list((tmp_path / "a" / "b").iterdir())

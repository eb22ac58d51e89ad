"""A disk that fills while `mmoe train --checkpoint-every 1` writes: one line on stderr, exit
code 2, the previous checkpoint whole, and `--resume` (once there is space) ends with the
weights of a run that never stopped."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe.app.fit import partial_dir
from mmoe.cli import main
from mmoe.train import trainer as trainer_module
from mmoe.train.checkpoint import load_checkpoint
from mmoe.train.model_dir import load_model_dir

GOOD_SAVES = 3  # checkpoints written before the disk is full


def _argv(data, out, *extra):
    return ["train", "--train", str(data), "--task", "buys:binary:yes", "--task",
            "spend:regression", "--out", str(out), "--epochs", "2", "--batch-size", "16",
            "--threads", "1", "--seed", "3", "--checkpoint-every", "1", "--ensemble", "1",
            *extra]  # one model: the subprocess runs keep the default, five on a small table


def _table(path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=120)
    pd.DataFrame({"x": x, "w": rng.normal(size=120),
                  "buys": np.where(x + rng.normal(size=120) > 0, "yes", "no"),
                  "spend": 50 + 10 * x + rng.normal(size=120)}).to_csv(path, index=False)
    return path


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    return exc.value.code, capsys.readouterr().err


def _check_failed_run_then_resume(root, out, data, code, err, capsys):
    """What the full disk left: one line, the last good checkpoint whole, nothing else; then
    a resume equals a run that never stopped."""
    lines = [line for line in err.splitlines() if line.startswith("mmoe:")]
    ckpt = partial_dir(out) / "checkpoint.pt"
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"mmoe: error: cannot write '{ckpt}'"), lines
    assert "the previous one there is kept, whole" in lines[0] and "resume" in lines[0]
    assert load_checkpoint(ckpt)["trainer"]["global_step"] == GOOD_SAVES
    assert sorted(p.name for p in partial_dir(out).iterdir()) == ["checkpoint.pt"]
    assert not out.exists()
    code, err = _run(_argv(data, out, "--resume"), capsys)
    assert code == 0, err
    code, err = _run(_argv(data, root / "straight"), capsys)
    assert code == 0, err
    a, b = load_model_dir(out).model, load_model_dir(root / "straight").model
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def _fill(directory):
    """Fill the file system of ``directory`` up."""
    with open(directory / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                fh.write(b"\0")
        except OSError:
            pass


@pytest.fixture
def tmpfs(tmp_path):
    """A 64 MiB tmpfs at ``tmp_path / 'disk'`` (skipped where mounting is not allowed)."""
    if shutil.which("mount") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount")
    target = tmp_path / "disk"
    target.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(target)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield target
    subprocess.run(["umount", str(target)], check=False)


def test_full_disk_at_a_checkpoint_is_one_line_and_the_last_one_resumes(tmpfs, capsys,
                                                                       monkeypatch):
    data = _table(tmpfs.parent / "rows.csv")
    out = tmpfs / "m"
    save, calls = trainer_module.save_training, []

    def then_full(*args, **kwargs):
        if len(calls) == GOOD_SAVES:
            _fill(tmpfs)
        calls.append(1)
        return save(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(trainer_module, "save_training", then_full)
        code, err = _run(_argv(data, out), capsys)
    assert "No space left on device" in err, err
    (tmpfs / "filler").unlink()  # space again
    _check_failed_run_then_resume(tmpfs.parent, out, data, code, err, capsys)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32", reason="POSIX limits")
def test_file_size_limit_at_a_checkpoint_is_one_line_and_the_last_one_resumes(tmp_path,
                                                                             capsys):
    """The same without root: the process's file-size limit (RLIMIT_FSIZE) drops below a
    checkpoint's size after the first checkpoints, so the next write fails as on a full
    disk."""
    data = _table(tmp_path / "rows.csv")
    out = tmp_path / "m"
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from mmoe.cli import main
        from mmoe.train import trainer
        save, calls = trainer.save_training, []
        def then_limited(*args, **kwargs):
            if len(calls) == {GOOD_SAVES}:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a kill
                resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))
            calls.append(1)
            return save(*args, **kwargs)
        trainer.save_training = then_limited
        main(sys.argv[1:])
    """)
    done = subprocess.run([sys.executable, "-c", script, *map(str, _argv(data, out))],
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    _check_failed_run_then_resume(tmp_path, out, data, done.returncode, done.stderr, capsys)

"""Kill and resume: `mmoe train --resume` after SIGKILLs at several moments ends with the same
model as an uninterrupted run, and a kill never leaves a half-written checkpoint or model.

The runs are real processes killed with SIGKILL. They are forked from a forkserver that has
imported mmoe once, so each run starts in milliseconds instead of re-importing torch.
"""

import multiprocessing
import os
import random
import signal
import time

import numpy as np
import pytest
import torch

from mmoe.app.fit import partial_dir
from mmoe.app.predict import predict_frame
from mmoe.cli import main
from mmoe.train.checkpoint import load_checkpoint
from mmoe.train.model_dir import load_model_dir, read_manifest

from .conftest import TASK_FLAGS, make_table

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def _quiet_main(argv, log):
    """The `mmoe` entry point with stdout/stderr sent to ``log`` (a forked run's output)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    main(argv)


@pytest.fixture(scope="module")
def ctx():
    context = multiprocessing.get_context("forkserver")
    # everything a run imports (torch._dynamo: by the optimizer; matplotlib: the gate figure)
    context.set_forkserver_preload(["mmoe.cli", "mmoe.app.fit",
                                    "mmoe.experiments.census.run", "torch._dynamo",
                                    "matplotlib.pyplot", __name__])
    return context


def _start(ctx, argv, log):
    proc = ctx.Process(target=_quiet_main, args=([str(a) for a in argv], str(log)))
    proc.start()
    return proc


def _assert_nothing_half_written(out):
    """What a kill may leave: a loadable checkpoint, a complete model directory or none, and
    temp files that are never read (cleaned by the next run)."""
    ckpt = partial_dir(out) / "checkpoint.pt"
    if ckpt.exists():
        load_checkpoint(ckpt)  # raises on a truncated file
    if out.exists():
        read_manifest(out)  # complete, checksums match
    for p in out.parent.iterdir():
        if p.name.startswith("."):
            assert p.name == partial_dir(out).name or p.name.startswith(f".{out.name}.tmp-"), p
    if partial_dir(out).exists():
        for p in partial_dir(out).iterdir():
            assert p.name == "checkpoint.pt" or (p.name.startswith(".checkpoint.pt.")
                                                 and p.name.endswith(".tmp")), p


def _step_of(ckpt):
    return load_checkpoint(ckpt)["trainer"]["global_step"] if ckpt.exists() else 0


def test_sigkill_at_several_moments_then_resume_equals_uninterrupted(ctx, tmp_path):
    data = tmp_path / "rows.csv"
    make_table(200, seed=3).to_csv(data, index=False)
    args = ["train", "--train", data, *TASK_FLAGS, "--epochs", "3", "--batch-size", "8",
            "--checkpoint-every", "4", "--threads", "1", "--seed", "11", "--ensemble", "1"]
    log = tmp_path / "log.txt"

    straight = tmp_path / "straight"
    proc = _start(ctx, [*args, "--out", straight], log)
    proc.join(120)
    assert proc.exitcode == 0, log.read_text()

    out = tmp_path / "runs" / "m"
    ckpt = partial_dir(out) / "checkpoint.pt"
    rng = random.Random(0)
    kills, steps = 0, []
    for attempt in range(4):
        proc = _start(ctx, [*args, "--out", out, "--resume"], log)
        before = ckpt.stat().st_mtime_ns if ckpt.exists() else None
        deadline = time.monotonic() + 60
        # moment 1: the instant the first checkpoint appears; later: a random delay after
        # this run wrote its first checkpoint
        while proc.is_alive() and time.monotonic() < deadline:
            if ckpt.exists() and ckpt.stat().st_mtime_ns != before:
                break
            time.sleep(0.002)
        if attempt > 0:
            time.sleep(rng.uniform(0.0, 0.3))
        if attempt == 3 or not proc.is_alive():
            proc.join(120)  # the last run finishes
            assert proc.exitcode == 0, log.read_text()
            break
        proc.kill()  # SIGKILL
        proc.join(30)
        if proc.exitcode == -signal.SIGKILL:
            kills += 1
        _assert_nothing_half_written(out)
        steps.append(_step_of(ckpt))
    assert kills >= 2, (kills, log.read_text())  # training was really interrupted
    assert steps == sorted(steps) and steps[0] >= 4  # each resume made progress
    assert not partial_dir(out).exists()  # a finished run leaves no checkpoint behind
    assert sorted(p.name for p in out.parent.iterdir()) == ["m"]

    a, b = load_model_dir(straight), load_model_dir(out)
    for (k, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items(),
                              strict=True):
        assert torch.equal(x, y), k
    df = make_table(120, seed=9)
    pa, pb = predict_frame(a.model, a.encoder, df), predict_frame(b.model, b.encoder, df)
    assert pa.equals(pb)
    assert np.isfinite(pa["spend"]).all()
    drop = ("seconds", "samples_per_s")
    ha = [{k: v for k, v in r.items() if k not in drop} for r in a.metrics["history"]]
    hb = [{k: v for k, v in r.items() if k not in drop} for r in b.metrics["history"]]
    assert ha == hb and len(ha) == 3


def test_resume_without_a_checkpoint_starts_fresh_and_leftovers_are_refused(ctx, tmp_path,
                                                                             capsys):
    data = tmp_path / "rows.csv"
    make_table(120, seed=1).to_csv(data, index=False)
    args = ["train", "--train", data, "--task", "buys:binary:yes", "--epochs", "2",
            "--batch-size", "16", "--threads", "1", "--ensemble", "1"]
    out = tmp_path / "m"
    # an interrupted run's checkpoint without --resume: refused, the checkpoint kept
    partial_dir(out).mkdir()
    (partial_dir(out) / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in [*args, "--out", out]])
    assert exc.value.code == 2
    assert "--resume" in capsys.readouterr().err
    # --resume with a damaged checkpoint: a clear error naming it and the way out
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in [*args, "--out", out, "--resume"]])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "checkpoint.pt" in err and "--overwrite" in err
    # --overwrite discards it; --resume with nothing to resume starts fresh
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in [*args, "--out", out, "--overwrite"]])
    assert exc.value.code == 0 and read_manifest(out) and not partial_dir(out).exists()
    other = tmp_path / "fresh"
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in [*args, "--out", other, "--resume"]])
    assert exc.value.code == 0
    first, second = load_model_dir(out), load_model_dir(other)
    assert all(torch.equal(x, y) for x, y in zip(first.model.state_dict().values(),
                                                 second.model.state_dict().values(), strict=True))


def test_resume_with_other_settings_is_refused(tmp_path, capsys, monkeypatch):
    import mmoe.app.fit as own_data

    data = tmp_path / "rows.csv"
    make_table(120, seed=1).to_csv(data, index=False)
    out = tmp_path / "m"
    args = ["train", "--train", data, "--task", "buys:binary:yes", "--epochs", "2",
            "--batch-size", "16", "--threads", "1", "--ensemble", "1", "--out", out]

    def dies(*a, **k):
        raise OSError(28, "No space left on device")  # e.g. the disk filled up at the end

    with monkeypatch.context() as m:
        m.setattr(own_data, "save_model_dir", dies)
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
    assert exc.value.code == 2 and "No space left" in capsys.readouterr().err
    assert _step_of(partial_dir(out) / "checkpoint.pt") == 14  # the work is kept
    for extra, needle in ((["--lr", "0.5"], "different training settings"),
                          (["--task", "spend:regression"], "different data, column, task"),
                          (["--model", "shared_bottom"], "different data, column, task")):
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in [*args, "--resume", *extra]])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and needle in err, err
    # settings that do not change the result may differ; nothing is retrained
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in [*args, "--resume", "--checkpoint-every", "3",
                               "--on-nonfinite", "skip"]])
    assert exc.value.code == 0, capsys.readouterr().err
    assert load_model_dir(out).metrics["history"][-1]["step"] == 14

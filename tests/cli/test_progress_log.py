"""With stderr not a terminal (a log file, a scheduler, a pipe), `mmoe train` writes one line
per epoch; `mmoe --quiet` writes none; library users get the lines through `logging`."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.cli import main
from mmoe.data.table import TensorTable
from mmoe.train import Trainer


def _csv(path, n=200, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    pd.DataFrame({"a": a, "b": rng.normal(size=n), "y": (a > 0).astype(int),
                  "v": a * 3 + rng.normal(size=n)}).to_csv(path, index=False)
    return str(path)


def _train(tmp_path, capsys, *before):
    args = ["--train", _csv(tmp_path / "t.csv"), "--valid", _csv(tmp_path / "v.csv", 80, 1),
            "--task", "y:binary", "--task", "v:regression", "--epochs", "3", "--ensemble", "1",
            "--out", str(tmp_path / "m"), "--overwrite"]
    with pytest.raises(SystemExit) as exit_:
        main([*before, "train", *args])
    assert exit_.value.code in (0, None)
    return capsys.readouterr().err


def test_one_line_per_epoch_when_stderr_is_not_a_terminal(tmp_path, capsys):
    lines = [line for line in _train(tmp_path, capsys).splitlines()
             if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    for line in lines:
        assert " s  loss " in line and "valid y auc 0." in line and "v r2 " in line
        assert "combined best " in line


def test_quiet_prints_no_progress(tmp_path, capsys):
    assert "epoch " not in _train(tmp_path, capsys, "--quiet")
    assert "epoch 1/3" in _train(tmp_path, capsys)  # the next command talks again


def test_library_users_route_the_lines_through_logging(caplog):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    data = TensorTable.from_arrays(x, (x[:, :1] > 0).float())
    model = build_model("mmoe", 3, [TaskSpec("y")], num_experts=2)
    with caplog.at_level(logging.INFO, logger="mmoe.train"):
        Trainer(model, TrainConfig(epochs=2, batch_size=32), progress=False).fit(data, data)
    assert [r.getMessage().split()[1] for r in caplog.records
            if r.name == "mmoe.train"] == ["1/2", "2/2"]


def test_predict_and_reproduce_log_their_progress(tmp_path, capsys):
    _train(tmp_path, capsys)
    for quiet in ((), ("--quiet",)):
        with pytest.raises(SystemExit) as exit_:
            main([*quiet, "predict", str(tmp_path / "m"), str(tmp_path / "t.csv"), "--out",
                  str(tmp_path / "p.csv"), "--chunk-rows", "64"])
        assert exit_.value.code in (0, None)
        err = capsys.readouterr().err
        assert ("predict t.csv: 200 rows, " in err) != bool(quiet)
    with pytest.raises(SystemExit):
        main(["reproduce", "synthetic", "--runs", "2", "--steps", "20", "--lr-runs", "1",
              "--lr", "0.01", "--correlations", "0.5", "--models", "mmoe", "--n-train", "200",
              "--out", str(tmp_path / "syn")])
    last = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("synthetic")]
    assert last and last[-1].startswith("synthetic study: ") and "(100%)" in last[-1]


def test_log_bar_lines_are_paced():
    from mmoe._progress import LogBar

    clock = iter([0, 5, 31, 40, 100, 100]).__next__
    bar, lines = LogBar(None, "predict x.csv", "row", every=30, clock=clock), []
    bar.emit = lines.append
    for n in (10, 20, 30, 40):  # at 5 s, 31 s, 40 s, 100 s
        bar.update(n)
    bar.close()
    assert lines == ["predict x.csv: 30 rows, 31 s", "predict x.csv: 100 rows, 1.7 min"]

"""`mmoe train` when training goes non-finite: one true line on stderr, exit code 2, no model
directory, and a checkpoint named only when one exists."""

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe.app.fit import partial_dir
from mmoe.cli import main
from mmoe.objectives import MultiTaskLoss
from mmoe.train.checkpoint import load_checkpoint


@pytest.fixture
def rows(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=200)
    path = tmp_path / "rows.csv"
    pd.DataFrame({"x": x, "z": rng.normal(size=200),
                  "buys": np.where(x + 0.3 * rng.normal(size=200) > 0, "yes", "no"),
                  "spend": 100 + 20 * x + rng.normal(size=200)}).to_csv(path, index=False)
    return path


def _train(rows, out, capsys, *extra):
    argv = ["train", "--train", str(rows), "--task", "buys:binary:yes",
            "--task", "spend:regression", "--out", str(out), "--epochs", "2",
            "--batch-size", "16", "--threads", "1", *extra]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.startswith("mmoe:")]  # warnings (gate health) may precede it
    return exc.value.code, err


def test_huge_lr_names_no_checkpoint_that_does_not_exist(rows, tmp_path, capsys):
    out = tmp_path / "m"
    code, err = _train(rows, out, capsys, "--lr", "1e6")
    assert code == 2 and len(err) == 1, err
    assert "no checkpoint of this run had been written yet" in err[0], err
    assert "kept in" not in err[0], err
    assert not (partial_dir(out) / "checkpoint.pt").exists() and not out.exists()
    # with a checkpoint every step, the message names the last one, which loads
    code, err = _train(rows, out, capsys, "--lr", "1e6", "--checkpoint-every", "1")
    step = load_checkpoint(partial_dir(out) / "checkpoint.pt")["trainer"]["global_step"]
    assert code == 2 and f"the last good checkpoint, of step {step}, is kept in" in err[0], err


def test_skip_with_every_step_skipped_fails_instead_of_saving_a_model(rows, tmp_path, capsys,
                                                                     monkeypatch):
    parts = MultiTaskLoss.parts

    def spend_is_inf(self, logits, labels, weights):
        num, den = parts(self, logits, labels, weights)
        return num * torch.tensor([1.0, float("inf")]), den  # task 'spend': inf

    monkeypatch.setattr(MultiTaskLoss, "parts", spend_is_inf)
    out = tmp_path / "m"
    code, err = _train(rows, out, capsys, "--on-nonfinite", "skip")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("mmoe: error: every step of epoch 1 was skipped") and \
        "task 'spend' (inf)" in err[0] and "learned nothing" in err[0], err
    assert not out.exists()


def test_overflowing_weights_with_skip_name_the_cause_not_sklearn(rows, tmp_path, capsys):
    out = tmp_path / "m"
    code, err = _train(rows, out, capsys, "--lr", "1e300", "--on-nonfinite", "skip")
    assert code == 2 and len(err) == 1, err
    assert "weights are no longer finite" in err[0] and "Input contains" not in err[0], err
    assert not out.exists()

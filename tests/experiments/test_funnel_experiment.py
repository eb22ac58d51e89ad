"""`mmoe reproduce funnel`: the entire-space AUC, and a small end-to-end run through the CLI."""

import json

import numpy as np
import pytest

from mmoe.cli import main
from mmoe.experiments.funnel import entire_space_auc
from mmoe.experiments.funnel.report import claims


def test_entire_space_auc_by_hand():
    q = np.array([0.2, 0.8])
    # positives weigh (0.2, 0.8), negatives (0.8, 0.2): ties count half
    # 0.2*0.8/2 + 0.8*0.8 + 0.8*0.2/2 = 0.8 over a total weight of 1 x 1
    assert entire_space_auc(q, q) == pytest.approx(0.8)
    assert entire_space_auc(-q, q) == pytest.approx(0.2)
    assert entire_space_auc(np.zeros(2), q) == pytest.approx(0.5)


def test_reproduce_funnel_end_to_end(tmp_path, capsys):
    out = tmp_path / "funnel"
    with pytest.raises(SystemExit) as done:
        main(["reproduce", "funnel", "--rows", "12000", "--users", "300", "--items", "100",
              "--runs", "2", "--epochs", "1", "--models", "single_task,esmm,aitm",
              "--threads", "1", "--out", str(out)])
    assert done.value.code == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in results["runs"]] == ["single_task"] * 2 + ["esmm"] * 2 \
        + ["aitm"] * 2
    oracle = results["oracle"]
    assert set(oracle) == {"click", "purchase", "click_and_purchase", "cvr_entire_space"}
    assert 0.6 < oracle["click"]["auc"] <= 1 and 0.6 < oracle["cvr_entire_space"]["auc"] <= 1
    # the conditional is scored on clicked rows only: fewer rows than the joint
    for run in results["runs"]:
        assert 0 <= run["test"]["purchase"]["auc"] <= 1
    verdicts = {(c["a"], c["b"], c["output"]): c for c in claims(results)}
    assert ("esmm", "single_task", "cvr_entire_space") in verdicts
    assert all(c["n"] == 2 and c["low"] <= c["mean"] <= c["high"] for c in verdicts.values())
    report = (out / "report.md").read_text()
    assert "| oracle (true probabilities) |" in report and "## Claims" in report
    assert (out / "funnel.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote" in capsys.readouterr().out


def test_reproduce_funnel_rejects_unknown_models(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["reproduce", "funnel", "--models", "esmm,nope", "--out", str(tmp_path / "o")])
    assert done.value.code == 2
    assert "nope" in capsys.readouterr().err

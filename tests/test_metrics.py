import math

import numpy as np

from mmoe import TaskSpec
from mmoe.metrics import evaluate, primary_metric


def test_metrics_per_kind_on_labelled_rows_only():
    tasks = [TaskSpec("b", "binary"), TaskSpec("r", "regression"),
             TaskSpec("c", "multiclass", classes=("x", "y"))]
    logits = np.array([[2.0, 1.0, 0.0, 1.0],
                       [-2.0, 2.0, 1.0, 0.0],
                       [1.0, 5.0, 0.0, 1.0],
                       [0.0, 0.0, 0.0, 0.0]])
    labels = np.array([[1, 1, 1], [0, 4, 0], [0, np.nan, np.nan], [np.nan, 0, 1]], dtype=float)
    res = evaluate(tasks, [slice(0, 1), slice(1, 2), slice(2, 4)], logits, labels)
    # binary scores sigmoid(2) > sigmoid(1) > sigmoid(-2): positive ranked first -> AUC 1
    assert res["b"]["auc"] == 1.0 and res["b"]["n"] == 3
    p = 1 / (1 + np.exp(-np.array([2.0, -2.0, 1.0])))
    y = np.array([1, 0, 0])
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert math.isclose(res["b"]["logloss"], float(expected))
    # regression rows 0, 1, 3: errors 0, 2, 0 -> MSE 4/3; mean label 5/3 -> SS_tot = 8.67
    assert math.isclose(res["r"]["mse"], 4 / 3)
    ss_tot = np.sum((np.array([1, 4, 0]) - 5 / 3) ** 2)
    assert math.isclose(res["r"]["r2"], 1 - 4 / ss_tot)
    # multiclass rows 0, 1, 3: argmax 1, 0, 0 vs labels 1, 0, 1 -> 2/3
    assert math.isclose(res["c"]["accuracy"], 2 / 3)


def test_auc_with_one_class_is_nan_and_directions():
    res = evaluate([TaskSpec("b")], [slice(0, 1)], np.array([[0.1], [0.2]]),
                   np.array([[1.0], [1.0]]))
    assert math.isnan(res["b"]["auc"])
    assert primary_metric(TaskSpec("b")) == ("auc", True)
    assert primary_metric(TaskSpec("r", "regression")) == ("mse", False)

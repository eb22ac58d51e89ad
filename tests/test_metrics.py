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


def test_non_finite_predictions_name_the_task_in_one_line():
    tasks = [TaskSpec("ok", "regression"), TaskSpec("clicks", "binary"),
             TaskSpec("seg", "multiclass", classes=("x", "y"))]
    slices = [slice(0, 1), slice(1, 2), slice(2, 4)]
    labels = np.array([[1.0, 1, 0], [2.0, 0, 1], [3.0, 1, 1]])
    for col, name in ((1, "clicks"), (2, "seg"), (0, "ok")):
        logits = np.zeros((3, 4))
        logits[1, col] = np.nan
        try:
            evaluate(tasks, slices, logits, labels)
        except ValueError as err:
            msg = str(err)
        else:
            raise AssertionError("no error")
        assert "\n" not in msg and msg.startswith(f"task '{name}': 1 of 3 predictions are "
                                                  "not finite"), msg
    logits = np.zeros((3, 4))
    logits[0, 0] = np.inf  # a regression prediction of inf
    try:
        evaluate(tasks, slices, logits, labels)
    except ValueError as err:
        assert str(err).startswith("task 'ok': 1 of 3 predictions are not finite"), str(err)
    else:
        raise AssertionError("no error")


def test_infinite_labels_name_the_task():
    labels = np.array([[1.0], [np.inf], [np.nan]])
    try:
        evaluate([TaskSpec("r", "regression")], [slice(0, 1)], np.zeros((3, 1)), labels)
    except ValueError as err:
        assert str(err).startswith("task 'r': 1 of 2 labels are infinite"), str(err)
    else:
        raise AssertionError("no error")
    # rows whose prediction is non-finite but whose label is missing are not judged
    logits = np.array([[0.0], [1.0], [np.nan]])
    res = evaluate([TaskSpec("r", "regression")], [slice(0, 1)], logits,
                   np.array([[0.0], [1.0], [np.nan]]))
    assert res["r"]["mse"] == 0.0 and res["r"]["n"] == 2

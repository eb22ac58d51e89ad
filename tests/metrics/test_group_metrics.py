"""Metrics over groups of rows (mmoe.metrics.groups): GAUC against scikit-learn's AUC per
group, NDCG@k and MRR against plain loops, a tiny example worked by hand, and the group
metrics in evaluate() and in what early stopping monitors."""

import math

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from mmoe import TaskSpec
from mmoe.metrics import calibration, evaluate, gauc, monitored, mrr, ndcg_at_k


def _random(seed=0, groups=60):
    """Groups of 1..25 rows, some with one class only; scores with ties."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 26, groups)
    g = np.repeat([f"user{i}" for i in range(groups)], sizes)
    rate = np.repeat(rng.choice([0.0, 0.2, 0.5, 1.0], groups, p=[0.1, 0.4, 0.4, 0.1]), sizes)
    y = (rng.random(len(g)) < rate).astype(int)
    s = np.round(rng.random(len(g)) + 0.3 * y, 1)  # rounded: ties within groups
    order = rng.permutation(len(g))  # groups interleaved, as rows of a log are
    return g[order], y[order], s[order]


def _gauc_sklearn(g, y, s):
    total = weight = 0.0
    used = skipped = 0
    for key in np.unique(g):
        rows = g == key
        if len(np.unique(y[rows])) < 2:
            skipped += 1
            continue
        total += rows.sum() * roc_auc_score(y[rows], s[rows])
        weight += rows.sum()
        used += 1
    return total / weight, used, skipped


def _ndcg_loop(g, y, s, k):
    values = []
    for key in dict.fromkeys(g):  # first appearance order
        rows = np.flatnonzero(g == key)
        by_score = sorted(rows, key=lambda r: -s[r])  # stable: ties keep row order
        by_label = sorted(rows, key=lambda r: -y[r])
        dcg = sum((2.0 ** y[r] - 1) / math.log2(j + 2) for j, r in enumerate(by_score[:k]))
        ideal = sum((2.0 ** y[r] - 1) / math.log2(j + 2) for j, r in enumerate(by_label[:k]))
        if ideal > 0:
            values.append(dcg / ideal)
    return float(np.mean(values)), len(values)


def _mrr_loop(g, y, s):
    values = []
    for key in dict.fromkeys(g):
        rows = sorted(np.flatnonzero(g == key), key=lambda r: -s[r])
        ranks = [j + 1 for j, r in enumerate(rows) if y[r] > 0]
        if ranks:
            values.append(1.0 / ranks[0])
    return float(np.mean(values)), len(values)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gauc_is_the_row_weighted_mean_of_sklearn_auc_per_group(seed):
    g, y, s = _random(seed)
    value, used, skipped = gauc(g, y, s)
    ref, ref_used, ref_skipped = _gauc_sklearn(g, y, s)
    assert (used, skipped) == (ref_used, ref_skipped)
    assert used > 10 and skipped > 5  # both kinds of group occur
    assert value == pytest.approx(ref, abs=1e-12)
    # AUC reads only the order of the scores
    assert gauc(g, y, np.exp(3 * s) - 7)[0] == pytest.approx(value, abs=1e-12)
    # integer group keys give the same
    codes = np.unique(g, return_inverse=True)[1]
    assert gauc(codes, y, s) == (value, used, skipped)


@pytest.mark.parametrize("seed", [0, 1])
def test_ndcg_and_mrr_equal_plain_loops(seed):
    g, y, s = _random(seed)
    for k in (1, 3, 10, 100):
        value, used = ndcg_at_k(g, y, s, k)
        ref, ref_used = _ndcg_loop(g, y, s, k)
        assert used == ref_used and value == pytest.approx(ref, abs=1e-12), k
    graded = y * np.random.default_rng(seed).integers(1, 4, len(y))  # labels 0..3
    assert ndcg_at_k(g, graded, s, 5)[0] == pytest.approx(_ndcg_loop(g, graded, s, 5)[0],
                                                          abs=1e-12)
    value, used = mrr(g, y, s)
    ref, ref_used = _mrr_loop(g, y, s)
    assert used == ref_used and value == pytest.approx(ref, abs=1e-12)


# group a: positive ranked 2nd of 3; b: positives at ranks 1 and 3 of 4; c: all positive;
# d: one negative row; e: a tie between its positive and its negative
G = np.array(["a", "b", "a", "c", "b", "b", "a", "d", "b", "c", "e", "e"])
Y = np.array([1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0])
S = np.array([0.3, 0.2, 0.5, 0.6, 0.9, 0.3, 0.1, 0.7, 0.4, 0.2, 0.5, 0.5])


def test_a_tiny_example_by_hand():
    # AUC_a: the positive (0.3) beats 0.1, loses to 0.5 -> 1/2 over 3 rows
    # AUC_b: positives 0.9, 0.3 vs negatives 0.2, 0.4 -> 3 of 4 pairs over 4 rows
    # AUC_e: a tie -> 1/2 over 2 rows; c (one class) and d (one row) skipped
    assert gauc(G, Y, S) == (pytest.approx((3 * 0.5 + 4 * 0.75 + 2 * 0.5) / 9, abs=1e-15),
                             3, 2)
    # NDCG@2: a: order 0.5 (0), 0.3 (1) -> (1/log2 3) / 1; b: order 0.9 (1), 0.4 (0) ->
    # 1 / (1 + 1/log2 3); c: all positive -> 1; e: tied, row order: positive first -> 1
    third = 1 / math.log2(3)
    value, used = ndcg_at_k(G, Y, S, k=2)
    assert used == 4 and value == pytest.approx((third + 1 / (1 + third) + 1 + 1) / 4,
                                                abs=1e-15)
    # k=1: a 0, b 1, c 1, e 1
    assert ndcg_at_k(G, Y, S, k=1) == (pytest.approx(0.75, abs=1e-15), 4)
    # MRR: a 1/2, b 1, c 1, e 1
    assert mrr(G, Y, S) == (pytest.approx(3.5 / 4, abs=1e-15), 4)
    # calibration: mean score / positive rate
    assert calibration(Y, S) == pytest.approx(S.mean() / Y.mean(), abs=1e-15)
    w = np.arange(1.0, 13.0)
    assert calibration(Y, S, w) == pytest.approx((S * w).sum() / (Y * w).sum(), abs=1e-15)
    assert math.isnan(calibration(np.zeros(3), np.full(3, 0.2)))


def test_nothing_to_measure_is_nan():
    assert math.isnan(gauc(["a", "b"], [1, 0], [0.2, 0.3])[0])
    assert gauc(["a", "b"], [1, 0], [0.2, 0.3])[1:] == (0, 2)
    assert math.isnan(ndcg_at_k(["a"], [0], [0.5])[0]) and ndcg_at_k(["a"], [0], [0.5])[1] == 0
    assert math.isnan(mrr(["a"], [0], [0.5])[0])


# ---- in evaluate() and the monitor ---------------------------------------------------------
def test_evaluate_with_groups_adds_the_group_metrics():
    g, y, s = _random(3)
    rng = np.random.default_rng(3)
    logits = np.stack([np.log(s + 0.05) - 1.0, rng.normal(size=len(y))], 1)
    labels = np.stack([y.astype(float), rng.normal(size=len(y))], 1)
    labels[::9, 0] = np.nan  # unlabelled rows do not count
    tasks = [TaskSpec("click"), TaskSpec("spend", "regression")]
    slices = [slice(0, 1), slice(1, 2)]
    plain = evaluate(tasks, slices, logits, labels)
    out = evaluate(tasks, slices, logits, labels, groups=g)
    assert set(out["click"]) == {"n", "auc", "logloss", "calibration", "gauc", "gauc_groups",
                                 "gauc_skipped", "ndcg@10", "mrr"}
    assert set(out["spend"]) == set(plain["spend"]) == {"n", "mse", "r2"}  # binary only
    for name in ("n", "auc", "logloss", "calibration"):
        assert out["click"][name] == plain["click"][name]
    keep = ~np.isnan(labels[:, 0])
    p, gk, yk = expit(logits[keep, 0]), g[keep], y[keep]
    value, used, skipped = _gauc_sklearn(gk, yk, p)
    assert out["click"]["gauc"] == pytest.approx(value, abs=1e-12)
    assert (out["click"]["gauc_groups"], out["click"]["gauc_skipped"]) == (used, skipped)
    assert out["click"]["ndcg@10"] == pytest.approx(_ndcg_loop(gk, yk, p, 10)[0], abs=1e-12)
    assert out["click"]["mrr"] == pytest.approx(_mrr_loop(gk, yk, p)[0], abs=1e-12)
    assert out["click"]["calibration"] == pytest.approx(p.mean() / yk.mean(), rel=1e-12)
    assert "ndcg@3" in evaluate(tasks, slices, logits, labels, groups=g, k=3)["click"]
    with pytest.raises(ValueError, match="k"):
        evaluate(tasks, slices, logits, labels, groups=g, k=0)


def test_monitored_picks_a_metric_of_a_task():
    tasks = [TaskSpec("click"), TaskSpec("buy"), TaskSpec("spend", "regression")]
    m = monitored("gauc:buy", tasks)
    assert (m.task.name, m.metric, m.higher_is_better) == ("buy", "gauc", True)
    assert [(m.name, m.higher_is_better) for m in (
        monitored(None, tasks), monitored("spend", tasks), monitored("logloss:click", tasks),
        monitored("ndcg@10:click", tasks))] == [
        ("combined", True), ("spend/mse", False), ("click/logloss", False),
        ("click/ndcg@10", True)]
    with pytest.raises(ValueError, match="nosuch"):
        monitored("gauc:nosuch", tasks)

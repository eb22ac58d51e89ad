"""TableEncoder on wrong column roles, absurd labels, damaged descriptions: one-line
ValueErrors, and rows named by the frame's own index."""

import copy
import math

import numpy as np
import pandas as pd
import pytest

from mmoe import TaskSpec
from mmoe.data.encoders import RowError, TableEncoder


def _frame(n=8):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"uid": np.arange(n) + 100, "age": rng.normal(40, 5, n),
                         "zip": np.arange(n) % 3 + 1000, "city": ["a", "b"] * (n // 2),
                         "w": np.ones(n), "clicked": [0, 1] * (n // 2),
                         "hours": rng.normal(size=n)})


def _fails(call, *needles):
    with pytest.raises(ValueError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)
    return info.value


TASKS = [TaskSpec("clicked", "binary"), TaskSpec("hours", "regression")]


# ---- column roles ----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, needles", [
    ({"categorical": ["clicked"]}, ("task 'clicked'", "'clicked'", "label")),
    ({"numeric": ["hours"]}, ("task 'hours'", "label")),
    ({"numeric": ["w"], "weight_column": "w"}, ("'w'", "sample-weight")),
    ({"categorical": ["uid"], "exclude": ["uid"]}, ("'uid'", "excluded")),
    ({"numeric": ["agee"]}, ("'agee'", "not in the data")),
    ({"categorical": ["cty"]}, ("'cty'", "not in the data")),
])
def test_column_roles_that_cannot_be(kwargs, needles):
    _fails(lambda: TableEncoder(TASKS, **kwargs).fit(_frame()), *needles)


def test_one_declared_column_does_not_flip_the_others():
    enc = TableEncoder(TASKS, numeric=["zip"], exclude=["uid"], weight_column="w").fit(_frame())
    assert enc.numeric == ["zip", "age"] and enc.categorical == ["city"]
    enc = TableEncoder(TASKS, categorical=["zip"], exclude=["uid"],
                       weight_column="w").fit(_frame())
    assert enc.numeric == ["age"] and enc.categorical == ["zip", "city"]
    enc = TableEncoder(TASKS, exclude=["uid"], weight_column="w").fit(_frame())
    assert enc.numeric == ["age", "zip"] and enc.categorical == ["city"]


# ---- labels too large for the metrics ------------------------------------------------------------
@pytest.mark.parametrize("scale", [True, False])
def test_huge_regression_label_is_an_error_at_encoding(scale):
    df = _frame().assign(hours=[1.0, 2.0, 1e308, 3.0, 4.0, 5.0, 6.0, 7.0])
    err = _fails(lambda: TableEncoder(TASKS, scale_regression=scale).fit(df),
                 "'hours'", "1e+308", "at row 2", "rescale")
    assert isinstance(err, RowError) and err.row == 2
    enc = TableEncoder(TASKS, scale_regression=scale).fit(_frame())
    _fails(lambda: enc.transform(df.iloc[2:]), "at row 2")


def test_large_but_representable_labels_round_trip_finitely():
    df = _frame().assign(hours=np.linspace(-1e18, 1e18, 8))
    enc = TableEncoder(TASKS, scale_regression=True).fit(df)
    z = enc.transform(df).labels.numpy()[:, 1]
    assert np.isfinite(enc.unscale("hours", z)).all()
    err = (enc.unscale("hours", z) - df["hours"].to_numpy(np.float32)) ** 2
    assert np.isfinite(err.mean())


# ---- rows named by the frame's index ----------------------------------------------------------
def test_errors_name_the_row_by_the_frame_index():
    enc = TableEncoder(TASKS, exclude=["uid"], weight_column="w",
                       numeric_encoding="standard").fit(_frame())  # standardised: can overflow
    bad = _frame().set_axis(range(500, 508))
    for df, needle, row in (
            (bad.assign(age=[1, 2, "x", 4, 5, 6, 7, 8]), "non-numeric value 'x'", 502),
            (bad.assign(age=[1, 2, 3, math.inf, 5, 6, 7, 8]), "infinite value", 503),
            (bad.assign(clicked=[0, 1, 0, 1, 7, 1, 0, 1]), "label value 7", 504),
            (bad.assign(w=[1, 1, 1, 1, 1, -1, 1, 1]), "sample-weight", 505),
            (bad.assign(age=[1, 2, 3, 4, 5, 6, 1e300, 8]), "too large", 506)):
        err = _fails(lambda df=df: enc.transform(df), needle, f"at row {row}")
        assert isinstance(err, RowError) and err.row == row
    err = _fails(lambda: enc.transform(bad.assign(age=[1, 2, "x", 4, 5, 6, 7, 8])), "row 502")
    assert err.located("line 504") == str(err).replace("row 502", "line 504")


# ---- hostile encoder descriptions ----------------------------------------------------------------
def _saved():
    df = _frame().assign(age=[np.nan] + [30.0] * 7)
    return TableEncoder(TASKS + [TaskSpec("city", "multiclass")], numeric=["age"],
                        categorical=["zip"], weight_column="w", exclude=["uid"],
                        scale_regression=True).fit(df).to_dict()


def _deep(depth=100_000):
    value = []
    for _ in range(depth):
        value = [value]
    return value


def _set(path, value):
    def damage(d):
        target = d
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return d
    return damage


DAMAGES = {
    "not a dict": lambda d: [d],
    "missing stats": _set(["stats"], KeyError),
    "missing tasks": _set(["tasks"], KeyError),
    "tasks not a list": _set(["tasks"], "clicked"),
    "no tasks": _set(["tasks"], []),
    "task not a dict": _set(["tasks", 0], "clicked"),
    "task unknown key": _set(["tasks", 0, "evil"], 1),
    "task kind": _set(["tasks", 0, "kind"], "ordinal"),
    "binary classes missing": _set(["tasks", 0, "classes"], []),
    "binary positive": _set(["tasks", 0, "positive"], "maybe"),
    "multiclass classes": _set(["tasks", 2, "classes"], ["a"]),
    "deep classes": _set(["tasks", 2, "classes"], _deep()),
    "numeric not names": _set(["numeric"], [1, 2]),
    "numeric deep": _set(["numeric"], _deep()),
    "numeric a string": _set(["numeric"], "age"),
    "stats nan": _set(["stats", "age"], [float("nan"), 1.0]),
    "stats inf std": _set(["stats", "age"], [0.0, float("inf")]),
    "stats zero std": _set(["stats", "age"], [0.0, 0.0]),
    "stats text": _set(["stats", "age"], ["0", "1"]),
    "stats bool": _set(["stats", "age"], [True, 1.0]),
    "stats short": _set(["stats", "age"], [0.0]),
    "stats missing column": _set(["stats"], {}),
    "stats extra column": _set(["stats", "zzz"], [0.0, 1.0]),
    "vocab not list": _set(["vocab", "zip"], "1000"),
    "vocab deep": _set(["vocab", "zip"], _deep()),
    "vocab missing": _set(["vocab"], {}),
    "indicator unknown": _set(["indicators"], ["nope"]),
    "min_count zero": _set(["min_count"], 0),
    "min_count text": _set(["min_count"], "1"),
    "weight not text": _set(["weight_column"], 3),
    "exclude not list": _set(["exclude"], {"uid": 1}),
    "label_stats nan": _set(["label_stats", "hours"], [0.0, float("nan")]),
    "label_stats unknown": _set(["label_stats", "clicked"], [0.0, 1.0]),
    "huge number": _set(["stats", "age"], [10 ** 400, 1.0]),
}


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_damaged_description_is_one_value_error(name):
    data = DAMAGES[name](copy.deepcopy(_saved()))
    _fails(lambda: TableEncoder.from_dict(data), "encoder description")


def test_saved_description_still_loads():
    data = _saved()
    back = TableEncoder.from_dict(copy.deepcopy(data))
    assert back.to_dict() == data
    old = copy.deepcopy(data)
    old.pop("label_stats")
    assert TableEncoder.from_dict(old).label_stats == {}


@pytest.mark.parametrize("values", [[1e308, -7.98e307], [1.7e308, -1.7e308],
                                    [1.7e308, -1.7e308, 0.0]])
def test_numbers_further_apart_than_a_float_holds_encode_finitely(values):
    """Piecewise-linear bins whose edges are further apart than float64's range (their
    difference overflows) still place each value in [0, 1] (found by the fuzz test)."""
    df = pd.DataFrame({"f0": values, "y": ["yes", "no", "yes"][:len(values)]})
    enc = TableEncoder([TaskSpec("y", "binary", positive="yes")]).fit(df)
    x = enc.transform(df).numeric.numpy()
    assert np.isfinite(x).all() and (x >= 0).all() and (x <= 1).all()
    assert x[np.argmax(values)].max() == 1.0 and x[np.argmin(values)].max() == 0.0

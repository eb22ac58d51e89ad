"""TableEncoder(scale_regression=True): regression labels standardised, inverted by unscale."""

import numpy as np
import pandas as pd
import pytest

from mmoe import TaskSpec
from mmoe.data.encoders import TableEncoder

TASKS = [TaskSpec("spend", "regression"), TaskSpec("buys", "binary")]


def _frame():
    return pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "spend": [100.0, 300.0, np.nan, 500.0],
                         "buys": [0, 1, 1, 0]})


def test_labels_standardised_and_inverted():
    df = _frame()
    enc = TableEncoder(TASKS, scale_regression=True).fit(df)
    mean, std = 300.0, np.std([100.0, 300.0, 500.0])
    assert enc.label_stats == {"spend": pytest.approx((mean, std))}
    y = enc.transform(df).labels.numpy()
    np.testing.assert_allclose(y[[0, 1, 3], 0], [(v - mean) / std for v in (100, 300, 500)],
                               rtol=1e-6)
    assert np.isnan(y[2, 0])  # missing labels stay missing (masked)
    np.testing.assert_allclose(y[:, 1], [0, 1, 1, 0])  # other kinds untouched
    np.testing.assert_allclose(enc.unscale("spend", y[[0, 1, 3], 0]), [100, 300, 500],
                               rtol=1e-6)
    assert enc.unscale("buys", np.array([0.25]))[0] == 0.25


def test_default_off_and_json_round_trip():
    df = _frame()
    plain = TableEncoder(TASKS).fit(df)
    assert plain.label_stats == {} and plain.transform(df).labels[0, 0] == 100.0
    enc = TableEncoder(TASKS, scale_regression=True).fit(df)
    back = TableEncoder.from_dict(enc.to_dict())
    assert back.label_stats == enc.label_stats and back.scale_regression
    np.testing.assert_array_equal(back.transform(df).labels.numpy(),
                                  enc.transform(df).labels.numpy())
    old = plain.to_dict()
    old.pop("label_stats")  # encoders saved before label scaling existed still load
    assert TableEncoder.from_dict(old).label_stats == {}


def test_constant_label_does_not_divide_by_zero():
    df = _frame().assign(spend=7.0)
    enc = TableEncoder(TASKS, scale_regression=True).fit(df)
    assert enc.label_stats["spend"] == (7.0, 1.0)
    assert float(enc.transform(df).labels[0, 0]) == 0.0

"""Numeric encodings (standard, quantile-normal, piecewise-linear): values against the
equations, missing values, fitted on training rows only, saved and applied again."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from mmoe.config import FeatureSpec, TaskSpec
from mmoe.data.encoders import TableEncoder
from mmoe.data.numeric import PLE_BINS, NumericEncoding, fit_numeric


def test_ple_matches_the_equation():
    rng = np.random.default_rng(0)
    train = rng.lognormal(0, 1, 5000)
    enc = fit_numeric(train, "ple", bins=8)
    edges = np.quantile(train, np.linspace(0, 1, 9))
    assert np.allclose(enc.points, edges)
    x = np.array([edges[0] - 1, edges[2] + 0.25 * (edges[3] - edges[2]), edges[-1] + 5])
    out = enc.transform(x)
    expected = np.zeros((3, 8))
    expected[1, :2] = 1.0
    expected[1, 2] = 0.25
    expected[2, :] = 1.0  # beyond the last edge: every bin full
    assert np.allclose(out, expected)
    # e_t is the value's position inside bin t: sum_t e_t (b_t - b_{t-1}) + b_0 = x inside
    inside = rng.uniform(edges[0], edges[-1], 100)
    back = enc.transform(inside) @ np.diff(edges) + edges[0]
    assert np.allclose(back, inside)


def test_ple_ties_and_constant_columns():
    enc = fit_numeric(np.array([0.0] * 90 + [1.0] * 10), "ple", bins=16)
    assert enc.points == (0.0, 1.0) and enc.width == 1  # duplicate edges merged
    assert enc.transform(np.array([0.0, 1.0, 0.5])).ravel().tolist() == [0.0, 1.0, 0.5]
    const = fit_numeric(np.full(10, 3.0), "ple")
    assert const.width == 1 and const.transform(np.array([3.0, 9.0])).tolist() == [[0.0], [0.0]]


def test_quantile_normal_is_the_normal_quantile_of_the_rank():
    train = np.random.default_rng(1).exponential(1.0, 20_000)
    enc = fit_numeric(train, "quantile")
    x = np.quantile(train, [0.1, 0.5, 0.9])
    assert np.allclose(enc.transform(x)[:, 0], norm.ppf([0.1, 0.5, 0.9]), atol=0.01)
    assert np.isfinite(enc.transform(np.array([-1e9, 1e9]))).all()  # beyond: clipped


@pytest.mark.parametrize("kind", ["standard", "quantile", "ple"])
def test_missing_values_encode_as_zeros(kind):
    enc = fit_numeric(np.array([1.0, 2.0, np.nan, 4.0, 8.0]), kind, bins=2)
    assert not enc.transform(np.array([np.nan])).any()


def test_round_trip_and_refusals():
    enc = fit_numeric(np.arange(50.0), "ple", bins=5)
    again = NumericEncoding.from_dict(json.loads(json.dumps(enc.to_dict())), "a")
    assert again == enc
    bad = enc.to_dict() | {"points": [3.0, 1.0]}
    with pytest.raises(ValueError, match="bin edges of 'a' are not increasing"):
        NumericEncoding.from_dict(bad, "a")
    with pytest.raises(ValueError, match="encoding of numeric column 'a'"):
        NumericEncoding.from_dict({"kind": "log"}, "a")


def _frame(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.lognormal(0, 2, n), "b": rng.normal(size=n),
                         "y": rng.integers(0, 2, n)})


def test_encoder_fits_on_training_rows_and_reloads():
    train, test = _frame(), _frame(seed=1)
    enc = TableEncoder([TaskSpec("y")], numeric_encoding="ple",
                       features=[FeatureSpec("b", "numeric", encoding="standard")]).fit(train)
    assert enc.encodings["a"].kind == "ple" and enc.encodings["b"].kind == "standard"
    assert enc.encodings["a"] == fit_numeric(train["a"].to_numpy(), "ple")
    spec = enc.input_spec()
    bins = enc.encodings["a"].width
    assert bins == PLE_BINS  # a continuous column fills every bin
    assert spec.numeric == ("b", *(f"a__ple{j}" for j in range(bins)))  # declared first
    x = enc.transform(test).numeric
    assert x.shape == (len(test), 1 + bins)
    assert np.allclose(x[:, 0].numpy(), (test["b"] - train["b"].mean()) / train["b"].std(ddof=0),
                       atol=1e-5)
    assert np.allclose(x[:, 1:].numpy(), enc.encodings["a"].transform(test["a"].to_numpy()))
    again = TableEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert again.encodings == enc.encodings
    assert np.array_equal(again.transform(test).numeric.numpy(), x.numpy())


def test_an_encoder_saved_before_encodings_reads_as_standardised():
    train = _frame()
    enc = TableEncoder([TaskSpec("y")], numeric_encoding="standard").fit(train)
    old = enc.to_dict()
    del old["encodings"]
    again = TableEncoder.from_dict(old)
    assert np.array_equal(again.transform(train).numeric.numpy(),
                          enc.transform(train).numeric.numpy())


def test_encoding_applies_to_numeric_columns_only():
    with pytest.raises(ValueError, match="encoding applies to numeric columns only"):
        FeatureSpec("c", "categorical", encoding="ple")
    with pytest.raises(ValueError, match="encoding must be one of"):
        FeatureSpec("c", "numeric", encoding="log")

"""MultiTaskEstimator: scikit-learn conventions and fit/predict round trips."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from mmoe import MultiTaskEstimator, TaskSpec

from .conftest import make_table

TASKS = ["buys:binary:yes", "spend:regression", "segment:multiclass"]


@pytest.fixture(scope="module")
def fitted():
    est = MultiTaskEstimator(tasks=TASKS, epochs=12, batch_size=32, threads=1,
                             id_columns=["user_id"], weight_column="w")
    return est.fit(make_table(600, 0))


def test_get_set_params_and_clone():
    est = MultiTaskEstimator("omoe", num_experts=3, epochs=2)
    params = est.get_params()
    assert params["model"] == "omoe" and params["num_experts"] == 3 and params["epochs"] == 2
    assert est.set_params(lr=0.01, model="ple") is est
    assert est.get_params()["lr"] == 0.01 and est.model == "ple"
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert not hasattr(twin, "model_")


def test_fit_predict_and_proba(fitted):
    test = make_table(150, 2).set_index(pd.RangeIndex(100, 250))
    pred = fitted.predict(test)
    assert list(pred.columns) == ["buys", "spend", "segment"]
    assert pred.index.equals(test.index)
    assert set(pred["buys"]) <= {"yes", "no"} and set(pred["segment"]) <= {"high", "low", "mid"}
    assert (pred["buys"] == test["buys"]).mean() > 0.8
    assert np.corrcoef(pred["spend"].astype(float), test["spend"])[0, 1] > 0.8  # label scale
    assert abs(pred["spend"].mean() - test["spend"].mean()) < 100
    proba = fitted.predict_proba(test)
    assert list(proba.columns) == ["buys", "segment_proba_high", "segment_proba_low",
                                   "segment_proba_mid"]
    np.testing.assert_array_equal(pred["buys"], np.where(proba["buys"] >= 0.5, "yes", "no"))
    seg = proba.filter(like="segment_proba").to_numpy()
    np.testing.assert_allclose(seg.sum(1), 1.0, atol=1e-5)
    assert [t.name for t in fitted.tasks_] == ["buys", "spend", "segment"]
    assert fitted.tasks_[0].classes == ("no", "yes")
    assert len(fitted.history_) == 12 and fitted.valid_metrics_["buys"]["auc"] > 0.8
    scores = fitted.evaluate(test)
    assert scores["segment"]["accuracy"] > 0.5


def test_clone_of_fitted_refits_identically(fitted):
    df = make_table(300, 4)
    a = clone(fitted).set_params(epochs=2).fit(df)
    b = clone(fitted).set_params(epochs=2).fit(df)
    pd.testing.assert_frame_equal(a.predict_proba(df), b.predict_proba(df))  # seeded


def test_task_specs_and_valid_frame():
    df = make_table(300, 0)
    est = MultiTaskEstimator(
        epochs=1, model="shared_bottom",
        tasks=[TaskSpec("bought", "binary", column="buys", positive="yes")]).fit(
        df, valid=make_table(50, 1))
    assert list(est.predict(df).columns) == ["bought"]
    assert est.valid_metrics_["bought"]["n"] == 50


def test_errors():
    with pytest.raises(NotFittedError):
        MultiTaskEstimator().predict(make_table(5))
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        MultiTaskEstimator("nope", tasks=["buys:binary:yes"]).fit(make_table(50))
    with pytest.raises(ValueError, match="requires y to be passed"):
        MultiTaskEstimator().fit(make_table(50))
    with pytest.raises(ValueError, match="'missing'"):
        MultiTaskEstimator(epochs=1, tasks=["missing:regression"]).fit(make_table(50))


def test_hidden_norm_is_a_parameter_that_survives_the_model_directory(tmp_path):
    est = MultiTaskEstimator(tasks=TASKS, hidden_norm=True, epochs=2, batch_size=32,
                             threads=1).fit(make_table(200, 0))
    assert est.model_.config.hidden_norm
    est.save(tmp_path / "m")
    back = MultiTaskEstimator.load(tmp_path / "m")
    assert back.get_params()["hidden_norm"] is True
    test = make_table(50, 3)
    pd.testing.assert_frame_equal(back.predict_proba(test), est.predict_proba(test))

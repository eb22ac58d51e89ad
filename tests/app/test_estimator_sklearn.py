"""MultiTaskEstimator inside scikit-learn: fit(X, y, sample_weight), the fitted attributes,
score, Pipeline / ColumnTransformer / cross_val_score / GridSearchCV, pickle, and model
directories."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mmoe import MultiTaskEstimator
from mmoe.app.predict import predict_file

from .conftest import make_table

LABELS = ["buys", "spend", "segment"]
TASKS = ["buys:binary:yes", "spend:regression", "segment:multiclass"]


def split(df):
    return df.drop(columns=LABELS + ["w", "user_id"]), df[LABELS]


@pytest.fixture(scope="module")
def xy_fitted():
    X, y = split(make_table(500, 0))
    # one model (not the five seeds a table this small gets): its history is its own
    return MultiTaskEstimator(epochs=8, batch_size=32, threads=1, ensemble=1).fit(X, y)


def test_tasks_inferred_from_y_and_classes_as_spelt(xy_fitted):
    est = xy_fitted
    assert [(t.name, t.kind) for t in est.tasks_] == [
        ("buys", "binary"), ("spend", "regression"), ("segment", "multiclass")]
    assert est.tasks_[0].positive == "yes"  # the greater of two values, as sklearn's classes_[1]
    assert est.classes_["buys"].tolist() == ["no", "yes"]
    assert est.classes_["segment"].tolist() == ["high", "low", "mid"]
    assert est.n_features_in_ == 3 and est.feature_names_in_.tolist() == ["x1", "x2", "city"]
    X, y = split(make_table(200, 3))
    pred = est.predict(X)
    assert list(pred.columns) == LABELS and pred.index.equals(X.index)
    assert (pred["buys"] == y["buys"]).mean() > 0.75


def test_integer_labels_come_back_as_integers():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = np.stack([(X[:, 0] > 0).astype(int), np.digitize(X[:, 1], [-0.5, 0.5]) + 3], axis=1)
    est = MultiTaskEstimator(epochs=10, batch_size=32, threads=1).fit(X, y)
    assert [t.kind for t in est.tasks_] == ["binary", "multiclass"]
    assert est.classes_["y0"].tolist() == [0, 1] and est.classes_["y1"].tolist() == [3, 4, 5]
    pred = est.predict(X)  # arrays in, an array out
    assert isinstance(pred, np.ndarray) and pred.shape == (300, 2)
    assert set(pred[:, 1]) <= {3, 4, 5}
    assert skm.accuracy_score(y[:, 0], pred[:, 0].astype(int)) > 0.8
    one = MultiTaskEstimator(epochs=2, threads=1).fit(X, y[:, 0])
    assert one.predict(X).shape == (300,) and one.predict_proba(X).shape == (300,)


def test_score_is_the_mean_task_skill(xy_fitted):
    X, y = split(make_table(300, 5))
    m = xy_fitted.evaluate(X, y)
    proba = xy_fitted.predict_proba(X)
    auc = skm.roc_auc_score(y["buys"] == "yes", proba["buys"])
    acc = skm.accuracy_score(y["segment"], xy_fitted.predict(X)["segment"])
    r2 = skm.r2_score(y["spend"], xy_fitted.predict(X)["spend"])
    assert m["buys"]["auc"] == pytest.approx(auc, abs=1e-6)
    assert m["segment"]["accuracy"] == pytest.approx(acc)
    assert m["spend"]["r2"] == pytest.approx(r2, abs=1e-4)  # in the label's units
    skill = ((2 * auc - 1) + r2 + (acc - 1 / 3) / (1 - 1 / 3)) / 3
    assert xy_fitted.score(X, y) == pytest.approx(skill, abs=1e-4)


def test_single_regression_score_is_r2():
    X, y = split(make_table(300, 1))
    est = MultiTaskEstimator(epochs=5, threads=1).fit(X, y["spend"])
    assert [t.name for t in est.tasks_] == ["spend"]  # a Series: one task, its name
    assert est.score(X, y["spend"]) == pytest.approx(
        skm.r2_score(y["spend"], est.predict(X)["spend"]), abs=1e-4)


def test_history_in_the_labels_units(xy_fitted):
    kept = xy_fitted.history_[xy_fitted.best_epoch_ - 1]["valid"]
    for task, metric in (("spend", "mse"), ("spend", "r2"), ("buys", "auc")):
        assert kept[task][metric] == pytest.approx(xy_fitted.valid_metrics_[task][metric],
                                                   rel=1e-5)
    assert xy_fitted.valid_metrics_["spend"]["mse"] > 100  # dollars squared, not z-scores
    assert all(isinstance(r["valid"]["spend"]["n"], int) for r in xy_fitted.history_)


def test_sample_weight_is_weight_column():
    df = make_table(300, 2)
    X, y = split(df)
    a = MultiTaskEstimator(epochs=3, threads=1).fit(X, y, sample_weight=df["w"].to_numpy())
    b = MultiTaskEstimator(epochs=3, threads=1, tasks=TASKS,
                           weight_column="w").fit(df.drop(columns="user_id"))
    pd.testing.assert_frame_equal(a.predict_proba(X), b.predict_proba(X))
    with pytest.raises(ValueError, match="zero"):
        MultiTaskEstimator(epochs=1).fit(X, y, sample_weight=np.zeros(len(X)))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(3,\), expected \(300,\)"):
        MultiTaskEstimator(epochs=1).fit(X, y, sample_weight=[1, 2, 3])


def test_labels_in_x_with_cross_val_score():
    df = make_table(300, 4).drop(columns=["user_id", "w"])
    est = MultiTaskEstimator(tasks=TASKS, epochs=3, threads=1)
    scores = cross_val_score(est, df, cv=KFold(3, shuffle=True, random_state=0))
    assert scores.shape == (3,) and (scores > 0.2).all()  # chance is 0


def test_pipeline_with_column_transformer_and_grid_search():
    df = make_table(300, 6)
    X, y = split(df)
    prep = ColumnTransformer([("num", StandardScaler(), ["x1"]),
                              ("cat", OneHotEncoder(sparse_output=False), ["city"])])
    pipe = make_pipeline(prep, MultiTaskEstimator(epochs=3, threads=1))
    pipe.fit(X.fillna({"city": "none"}), y)
    est = pipe[-1]
    assert est.n_features_in_ == 5 and not hasattr(est, "feature_names_in_")  # arrays
    assert pipe.predict(X.fillna({"city": "none"})).shape == (300, 3)
    prep.set_output(transform="pandas")  # named columns pass through
    pipe.fit(X.fillna({"city": "none"}), y)
    assert pipe[-1].feature_names_in_[0] == "num__x1"
    grid = GridSearchCV(MultiTaskEstimator(epochs=2, threads=1),
                        {"model": ["mmoe", "shared_bottom"], "lr": [3e-3]}, cv=2).fit(X, y)
    assert grid.best_params_["model"] in {"mmoe", "shared_bottom"}
    assert grid.best_estimator_.score(X, y) == pytest.approx(grid.score(X, y))


def test_feature_checks_at_predict(xy_fitted):
    X, _ = split(make_table(20, 7))
    with pytest.raises(ValueError, match=r"feature names should match.*\['x2'\]"):
        xy_fitted.predict(X.drop(columns="x2"))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        by_position = xy_fitted.predict(X.to_numpy())
    np.testing.assert_array_equal(by_position[:, 0], xy_fitted.predict(X)["buys"])
    with pytest.raises(ValueError, match="X has 2 features, but MultiTaskEstimator is "
                       "expecting 3"):
        xy_fitted.predict(X.to_numpy()[:, :2])


def test_pickle_and_model_directory_round_trips(xy_fitted, tmp_path):
    X, y = split(make_table(100, 8))
    expected = xy_fitted.predict_proba(X)
    pd.testing.assert_frame_equal(pickle.loads(pickle.dumps(xy_fitted)).predict_proba(X),
                                  expected)
    xy_fitted.save(tmp_path / "m")
    back = MultiTaskEstimator.load(tmp_path / "m")
    pd.testing.assert_frame_equal(back.predict_proba(X), expected)
    pd.testing.assert_frame_equal(back.predict(X), xy_fitted.predict(X))
    assert back.score(X, y) == pytest.approx(xy_fitted.score(X, y))
    assert back.get_params()["tasks"] == xy_fitted.tasks_
    assert back.best_epoch_ == xy_fitted.best_epoch_
    assert {"schema.json", "learning_curves.png", "gates.png"} <= {
        p.name for p in (tmp_path / "m").iterdir()}
    X.to_csv(tmp_path / "x.csv", index=False)  # `mmoe predict` reads the same directory
    predict_file(tmp_path / "m", tmp_path / "x.csv", tmp_path / "p.csv")
    cli = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(cli["buys"], expected["buys"], atol=1e-6)
    refit = MultiTaskEstimator.load(tmp_path / "m").set_params(epochs=1).fit(X, y)
    assert refit.predict(X).shape == (100, 3)

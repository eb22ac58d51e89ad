import numpy as np
import pandas as pd
import pytest
import torch

from mmoe import TaskSpec
from mmoe.data.encoders import TableEncoder


def _frame():
    return pd.DataFrame({
        "age": [20.0, np.nan, 40.0, 60.0],
        "city": ["a", "b", None, "a"],
        "buys": ["yes", "no", "yes", None],
        "kind": ["p", "q", "r", "p"],
        "spend": [1.0, 2.0, 3.0, 4.0],
        "w": [1.0, 2.0, 1.0, 0.5],
    })


TASKS = [TaskSpec("buys", "binary"), TaskSpec("kind", "multiclass"),
         TaskSpec("spend", "regression")]


def test_encoding_values():
    df = _frame()
    enc = TableEncoder(TASKS, weight_column="w", numeric_encoding="standard").fit(df)
    assert enc.numeric == ["age"] and enc.categorical == ["city"]
    table = enc.transform(df)
    mean, std = 40.0, np.std([20.0, 40.0, 60.0])
    expected = [(20 - mean) / std, 0.0, 0.0, (60 - mean) / std]  # missing -> mean -> 0
    torch.testing.assert_close(table.numeric[:, 0], torch.tensor(expected, dtype=torch.float32))
    assert table.numeric[:, 1].tolist() == [0, 1, 0, 0]  # missing indicator
    assert table.categorical[:, 0].tolist() == [1, 2, 0, 1]  # None -> OOV code 0
    labels = table.labels.numpy()
    assert labels[:3, 0].tolist() == [1, 0, 1] and np.isnan(labels[3, 0])
    assert labels[:, 1].tolist() == [0, 1, 2, 0]
    assert table.weights.tolist() == [1.0, 2.0, 1.0, 0.5]
    assert enc.tasks[0].positive == "yes" and enc.tasks[1].classes == ("p", "q", "r")
    spec = enc.input_spec(embedding_dim=4)
    assert spec.numeric == ("age", "age__missing") and spec.categorical == (("city", 3),)


def test_unseen_category_maps_to_oov_and_round_trip():
    enc = TableEncoder(TASKS).fit(_frame())
    other = _frame().assign(city=["zzz", "a", "b", "new"])
    again = TableEncoder.from_dict(enc.to_dict())
    for e in (enc, again):
        assert e.transform(other).categorical[:, 0].tolist() == [0, 1, 2, 0]
    assert torch.equal(enc.transform(_frame()).numeric, again.transform(_frame()).numeric)


def test_named_positive_value():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["lo", "hi", "lo"]})
    enc = TableEncoder([TaskSpec("y", "binary", positive="lo")]).fit(df)
    assert enc.transform(df).labels[:, 0].tolist() == [1.0, 0.0, 1.0]


@pytest.mark.parametrize("df, tasks, message", [
    (pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 2]}), [TaskSpec("y")],
     "task 'y': binary labels must have 2 distinct values, column 'y' has 3"),
    (pd.DataFrame({"x": [1.0, 2.0]}), [TaskSpec("y", column="label")],
     "task 'y': label column 'label' is not in the data"),
    (pd.DataFrame({"x": ["1", "two"], "y": [0, 1]}), [TaskSpec("y")],
     "column 'x': non-numeric value 'two'"),
    (pd.DataFrame({"x": [], "y": []}), [TaskSpec("y")], "the training data has no rows"),
    (pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]}), [TaskSpec("y")],
     "task 'y': column 'y' has values a, b; name the positive one"),
])
def test_bad_input_names_the_column_or_task(df, tasks, message):
    numeric = ["x"] if "x" in df.columns else None
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        TableEncoder(tasks, numeric=numeric, categorical=[] if numeric else None).fit(df)


def test_bad_values_at_transform_time():
    enc = TableEncoder(TASKS).fit(_frame())
    with pytest.raises(ValueError, match="column 'age': non-numeric value 'old'"):
        enc.transform(_frame().assign(age=["old", 1, 2, 3]))
    with pytest.raises(ValueError, match="task 'kind': label value 's'"):
        enc.transform(_frame().assign(kind=["p", "q", "r", "s"]))
    with pytest.raises(ValueError, match="the data has no rows"):
        enc.transform(_frame().iloc[:0])


def test_a_numeric_target_declared_multiclass_says_regression():
    df = pd.DataFrame({"x": np.arange(300.0), "wage": np.linspace(20.0, 300.0, 300)})
    with pytest.raises(ValueError, match=r"task 'wage': column 'wage' holds 300 distinct "
                                         r"numbers.*--task wage:regression"):
        TableEncoder([TaskSpec("wage", "multiclass")]).fit(df)
    few = df.assign(wage=(df["wage"] // 50).astype(int))  # a few numeric codes: classes
    assert len(TableEncoder([TaskSpec("wage", "multiclass")]).fit(few).tasks[0].classes) == 7


def test_an_unseen_class_names_a_few_classes_not_all():
    train = pd.DataFrame({"x": np.arange(60.0), "k": [f"c{i}" for i in range(60)]})
    enc = TableEncoder([TaskSpec("k", "multiclass")]).fit(train)
    with pytest.raises(ValueError, match=r"is not one of the 60 classes seen in training "
                                         r"\('c0', .* and 52 more\)"):
        enc.transform(train.assign(k="new"))

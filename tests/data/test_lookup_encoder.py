"""Columns looked up in tables of their own through TableEncoder(features=...): hashed ids,
sequences (hashed and vocabulary), categorical columns with their own width or min_count,
shared tables; what inference makes of undeclared columns; CSV text and Parquet lists; the
saved description."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from mmoe import TaskSpec
from mmoe.config import FeatureSpec, Lookup, default_buckets, default_width
from mmoe.data.encoders import TableEncoder
from mmoe.data.ids import stable_hash
from mmoe.data.inference import id_like, infer_kind, infer_specs
from mmoe.data.readers import read_table

TASKS = [TaskSpec("y")]


def _row(key: str, buckets: int) -> int:
    """The hashed row of one id: 1 + h mod buckets."""
    return 1 + int(stable_hash(np.array([key], dtype=object))[0] % np.uint64(buckets))


def _fit(df, *features, **kwargs):
    enc = TableEncoder(TASKS, features=features, **kwargs).fit(df)
    return enc, enc.transform(df)


def _ids(enc, df, name):
    """The ids columns of lookup ``name`` in ``enc.transform(df)``."""
    table = enc.transform(df, labels=False)
    start = 0
    for lk in enc.input_spec().lookups:
        if lk.name == name:
            return table.ids[:, start:start + lk.slots].tolist()
        start += lk.slots
    raise KeyError(name)


# ---- each kind -----------------------------------------------------------------------------
def test_hashed_ids_take_their_hash_row_seen_or_not_and_missing_is_zero():
    train = pd.DataFrame({"user_id": ["u1", "u2", "u1", None], "x": [1.0, 2, 3, 4],
                          "y": [0, 1, 0, 1]})
    enc, table = _fit(train, FeatureSpec("user_id", "hashed", buckets=64))
    assert enc.numeric == ["x"] and enc.categorical == []
    expected = [[_row("u1", 64)], [_row("u2", 64)], [_row("u1", 64)], [0]]
    assert table.ids.tolist() == expected and table.ids.dtype == torch.int64
    assert enc.input_spec().lookups == (
        Lookup("user_id", "user_id", rows=65, dim=default_width(65), slots=1, pooling="sum"),)
    unseen = pd.DataFrame({"user_id": ["zz9", " u2 ", "u1"], "x": [0.0, 0, 0]})
    assert _ids(enc, unseen, "user_id") == [[_row("zz9", 64)], [_row("u2", 64)],
                                            [_row("u1", 64)]]
    assert 1 <= _row("zz9", 64) <= 64


def test_a_hashed_column_mixing_numbers_and_text():
    train = pd.DataFrame({"user_id": pd.Series([12, "12", 7.0, "u1", None], dtype=object),
                          "y": [0, 1, 0, 1, 1]})
    enc, table = _fit(train, FeatureSpec("user_id", "hashed", buckets=1000))
    assert table.ids[:, 0].tolist() == [474, 474, 54, _row("u1", 1000), 0]


def test_hashed_without_buckets_gets_the_default_of_its_distinct_values():
    n = 3000
    df = pd.DataFrame({"user_id": np.arange(n) % 1500, "y": np.arange(n) % 2})
    enc, table = _fit(df, FeatureSpec("user_id", "hashed"))
    (spec,) = enc.specs()
    assert spec.buckets == default_buckets(1500) == 4096
    assert enc.input_spec().lookups[0].rows == 4097
    keys = (np.arange(n) % 1500).astype(str).astype(object)
    expected = (stable_hash(keys) % np.uint64(4096)).astype(np.int64) + 1
    assert np.array_equal(table.ids[:, 0].numpy(), expected)


def _recent_hashed(cells, buckets, max_len):
    """Each cell's last max_len ids hashed, oldest first, 0-padded: a plain loop."""
    out = []
    for cell in cells:
        ids = [] if cell is None or not cell.strip() else cell.split("|")
        rows = [_row(i.strip(), buckets) for i in ids][-max_len:]
        out.append(rows + [0] * (max_len - len(rows)))
    return out


def test_hashed_sequence_keeps_the_last_ids_oldest_first():
    cells = ["a|b|c|d|e", "", None, "b", "c|a"]
    df = pd.DataFrame({"tags": cells, "y": [0, 1, 0, 1, 1]})
    enc, table = _fit(df, FeatureSpec("tags", "sequence", buckets=50, max_len=3, pooling="sum"))
    assert table.ids.tolist() == _recent_hashed(cells, 50, 3)
    assert table.ids[0].tolist() == [_row("c", 50), _row("d", 50), _row("e", 50)]
    assert table.ids[1].tolist() == table.ids[2].tolist() == [0, 0, 0]  # empty, missing
    assert enc.input_spec().lookups == (
        Lookup("tags", "tags", rows=51, dim=default_width(51), slots=3, pooling="sum"),)
    other = pd.DataFrame({"tags": ["q|r|s|t|a"]})  # unseen, over long
    assert _ids(enc, other, "tags") == _recent_hashed(["q|r|s|t|a"], 50, 3)


def test_vocabulary_sequence_rows_out_of_vocabulary_and_padding():
    cells = ["7|5|9|5", "", None, "5|7", "9|8"]
    df = pd.DataFrame({"hist": cells, "y": [0, 1, 0, 1, 1]})
    enc, table = _fit(df, FeatureSpec("hist", "sequence", max_len=3, min_count=2))
    # counts: 5 x3, 7 x2, 9 x2, 8 x1 -> vocabulary of values seen twice, sorted: 5, 7, 9
    assert enc.lookup.vocab == {"hist": ["5", "7", "9"]}
    rows = {"5": 2, "7": 3, "9": 4}
    assert table.ids.tolist() == [[rows["5"], rows["9"], rows["5"]],  # last 3 of 4
                                  [0, 0, 0], [0, 0, 0],
                                  [rows["5"], rows["7"], 0],
                                  [rows["9"], 1, 0]]  # 8 is rare: out of vocabulary
    (lk,) = enc.input_spec().lookups
    assert (lk.rows, lk.slots, lk.pooling) == (5, 3, "mean")
    assert _ids(enc, pd.DataFrame({"hist": ["1|5|2"]}), "hist") == [[1, 2, 1]]


def test_categorical_with_its_own_width_and_min_count():
    df = pd.DataFrame({"city": ["paris", "rome", "paris", "oslo", None, "rome"],
                       "plain": ["a", "b", "a", "c", "b", None], "y": [0, 1, 0, 1, 1, 0]})
    enc, table = _fit(df, FeatureSpec("city", "categorical", embedding_dim=3, min_count=2))
    assert enc.categorical == ["plain"]  # the plain one keeps the shared embedding
    assert enc.lookup.vocab == {"city": ["paris", "rome"]}
    # rows: 0 missing, 1 out of vocabulary (oslo, seen once), 2 + index
    assert table.ids[:, 0].tolist() == [2, 3, 2, 1, 0, 3]
    assert table.categorical[:, 0].tolist() == [1, 2, 1, 3, 2, 0]
    assert enc.input_spec().lookups == (Lookup("city", "city", rows=4, dim=3, pooling="sum"),)
    spec = enc.input_spec(embedding_dim=5)
    assert spec.categorical == (("plain", 4),) and spec.width == 5 + 3
    unseen = pd.DataFrame({"city": ["berlin", "rome"], "plain": ["a", "zz"]})
    assert _ids(enc, unseen, "city") == [[1], [3]]


@pytest.mark.parametrize("owner", [FeatureSpec("item_id", "categorical"),
                                   FeatureSpec("item_id", "hashed", buckets=100)])
def test_a_shared_table_encodes_values_exactly_as_its_owner(owner):
    df = pd.DataFrame({"item_id": [5, 7, 5, 9, 11, None],
                       "history": ["", "5", "5|7", "5|7|5|13", "9", "11|5"],
                       "y": [0, 1, 0, 1, 1, 0]})
    enc, table = _fit(df, owner, FeatureSpec("history", "sequence", share="item_id",
                                             max_len=2))
    item, hist = enc.input_spec().lookups
    assert (item.table, hist.table) == ("item_id", "item_id")
    assert item.rows == hist.rows and item.dim == hist.dim and hist.slots == 2
    ids = table.ids.tolist()
    row_of = {k: ids[i][0] for i, k in enumerate(["5", "7", "5", "9", "11"])}
    assert len(set(row_of.values())) == 4 and ids[5][0] == 0
    assert [r[1:] for r in ids] == [[0, 0], [row_of["5"], 0], [row_of["5"], row_of["7"]],
                                    [row_of["5"], ids[3][2]], [row_of["9"], 0],
                                    [row_of["11"], row_of["5"]]]
    if owner.kind == "categorical":
        # the vocabulary holds both columns' training values (13 occurs in history only)
        assert enc.lookup.vocab == {"item_id": ["11", "13", "5", "7", "9"]}
        assert ids[3][2] == 2 + 1
        assert item.rows == 7
    else:
        assert ids[3][2] == _row("13", 100) and row_of["5"] == _row("5", 100)
        assert item.rows == 101


def test_a_declared_categorical_column_another_shares_becomes_a_lookup():
    df = pd.DataFrame({"item_id": ["a", "b", "a"], "history": ["b|a", "", "c"],
                       "y": [0, 1, 1]})
    enc = TableEncoder(TASKS, categorical=["item_id"], numeric=[],
                       features=[FeatureSpec("history", "sequence", share="item_id")]).fit(df)
    assert enc.categorical == []
    assert [s.name for s in enc.lookup.specs.values()] == ["item_id", "history"]
    assert enc.lookup.vocab == {"item_id": ["a", "b", "c"]}
    ids = enc.transform(df).ids
    assert ids[:, 0].tolist() == [2, 3, 2]
    assert ids[:, 1:3].tolist() == [[3, 2], [0, 0], [4, 0]]


# ---- CSV text and Parquet lists ------------------------------------------------------------
def _funnel_like(n=400, seed=0):
    rng = np.random.default_rng(seed)
    history = [[int(v) for v in rng.integers(0, 60, rng.integers(0, 7))] for _ in range(n)]
    return pd.DataFrame({"user_id": rng.integers(0, 2000, n), "item_id": rng.integers(0, 60, n),
                         "history": history, "price": rng.random(n).round(3),
                         "y": rng.integers(0, 2, n)})


def test_csv_text_and_parquet_lists_give_identical_ids(tmp_path):
    df = _funnel_like()
    df.to_parquet(tmp_path / "rows.parquet", index=False)  # Python lists: list<int64>
    df.assign(history=["|".join(map(str, h)) for h in df["history"]]).to_csv(
        tmp_path / "rows.csv", index=False)
    frames = [read_table(tmp_path / "rows.parquet"), read_table(tmp_path / "rows.csv")]
    assert isinstance(frames[0]["history"].dtype, pd.ArrowDtype)
    assert pd.api.types.is_string_dtype(frames[1]["history"].dtype)  # text "12|7|93"
    features = [FeatureSpec("user_id", "hashed", buckets=512),
                FeatureSpec("item_id", "categorical"),
                FeatureSpec("history", "sequence", share="item_id", max_len=4),
                FeatureSpec("tags", "sequence", buckets=97, max_len=3)]
    ids, specs = [], []
    for frame in frames:
        frame = frame.assign(tags=frame["history"])  # a hashed sequence of the same cells
        enc = TableEncoder(TASKS, features=features).fit(frame)
        ids.append(enc.transform(frame).ids)
        specs.append(enc.specs())
        inferred = TableEncoder(TASKS).fit(frame.drop(columns="tags"))
        specs.append(inferred.specs())
        ids.append(inferred.transform(frame).ids)
    assert torch.equal(ids[0], ids[2]) and torch.equal(ids[1], ids[3])
    assert specs[0] == specs[2] and specs[1] == specs[3]
    # and the rows are the ones a plain loop gives from the lists
    expected = _recent_hashed(["|".join(map(str, h)) for h in df["history"]], 97, 3)
    assert ids[0][:, 6:9].tolist() == expected


# ---- inference -------------------------------------------------------------------------------
def test_inference_of_each_kind():
    rng = np.random.default_rng(0)
    n = 3000
    users = rng.permutation(5000)[:1500]
    history = [[int(v) for v in rng.integers(0, 300, rng.integers(0, 5))] for _ in range(n)]
    df = pd.DataFrame({
        "user_id": rng.choice(users, n), "item_id": rng.integers(0, 300, n),
        "city": rng.choice(["a", "b", "c"], n), "price": rng.random(n),
        "history": pd.Series(pa.array(history, pa.list_(pa.int64()))
                             .to_pandas(types_mapper=pd.ArrowDtype)),
        "y": rng.integers(0, 2, n)})
    distinct = df["user_id"].nunique()
    assert distinct > 1000
    enc = TableEncoder(TASKS).fit(df)
    specs = {s.name: s for s in enc.specs()}
    assert specs["user_id"] == FeatureSpec("user_id", "hashed",
                                           buckets=default_buckets(distinct))
    assert specs["item_id"].kind == "categorical"  # 300 values: a vocabulary
    assert specs["history"] == FeatureSpec("history", "sequence", share="item_id", max_len=4)
    assert specs["city"] == FeatureSpec("city", "categorical")
    assert specs["price"] == FeatureSpec("price", "numeric")
    assert enc.numeric == ["price"] and enc.categorical == ["city"]
    assert [lk.table for lk in enc.input_spec().lookups] == ["user_id", "item_id", "item_id"]


def test_a_sequence_shares_an_id_column_from_half_of_its_ids():
    base = {"item_id": np.arange(40) % 10, "y": np.arange(40) % 2}
    half = [str(i) for i in range(10)] + [str(100 + i) for i in range(10)]  # 10 of 20
    less = half + ["200"]  # 10 of 21
    for ids, share in ((half, "item_id"), (less, None)):
        cells = ["|".join(ids[i::4]) for i in range(4)] * 10
        specs = infer_specs(pd.DataFrame({**base, "history": cells}), ["item_id", "history"])
        assert [s.kind for s in specs] == ["categorical", "sequence"]
        assert specs[1].share == share, ids


def test_infer_kind_and_id_names():
    assert infer_kind(pd.Series(range(1001), name="user_id")) == "hashed"
    assert infer_kind(pd.Series(range(1000), name="user_id")) == "categorical"
    assert infer_kind(pd.Series(np.arange(2000.0), name="itemId")) == "hashed"
    assert infer_kind(pd.Series(range(2000), name="amount")) == "numeric"
    assert infer_kind(pd.Series(np.arange(2000) + 0.5, name="user_id")) == "numeric"
    assert infer_kind(pd.Series([f"u{i}" for i in range(1001)])) == "hashed"
    assert infer_kind(pd.Series(["a", "b", None])) == "categorical"
    assert infer_kind(pd.Series([True, False])) == "categorical"
    assert infer_kind(pd.Series(["1|2", "3", "4|5", ""])) == "sequence"
    assert infer_kind(pd.Series(["a|b", "c", "d", "e"])) == "categorical"  # 1 in 4 delimited
    assert [id_like(n) for n in ("user_id", "ids", "sku_ids", "itemId", "id", "paid", "idle",
                                 "width")] == [True] * 5 + [False] * 3


# ---- the saved description ---------------------------------------------------------------------
def _fitted():
    df = _funnel_like(200).assign(
        history=lambda d: ["|".join(map(str, h)) for h in d["history"]],
        city=lambda d: np.where(d["price"] > 0.5, "x", "y"))
    enc = TableEncoder(TASKS, features=[
        FeatureSpec("user_id", "hashed", buckets=300),
        FeatureSpec("history", "sequence", share="item_id", max_len=3, pooling="sum"),
        FeatureSpec("city", "categorical", embedding_dim=2, min_count=3)]).fit(df)
    return enc, df


def test_round_trip_through_json_transforms_identically():
    enc, df = _fitted()
    data = enc.to_dict()
    assert set(data["lookups"]) == {"specs", "vocab"}
    again = TableEncoder.from_dict(json.loads(json.dumps(data)))
    assert again.specs() == enc.specs()
    assert again.input_spec(4) == enc.input_spec(4)
    other = _funnel_like(50, seed=9).assign(
        history=lambda d: ["|".join(map(str, h + [999])) for h in d["history"]],
        city="z", user_id=lambda d: d["user_id"] + 10**9)
    for frame in (df, other):
        a, b = enc.transform(frame), again.transform(frame)
        assert a.categorical is None and b.categorical is None  # city has its own table
        assert torch.equal(a.ids, b.ids) and torch.equal(a.numeric, b.numeric)
    assert TableEncoder.from_dict(again.to_dict()).to_dict() == data


def _damaged(change):
    enc, _ = _fitted()
    data = json.loads(json.dumps(enc.to_dict()))
    change(data["lookups"], data)
    return data


@pytest.mark.parametrize("change, needle", [
    (lambda lk, d: lk.pop("vocab"), "specs and vocab"),
    (lambda lk, d: lk.update(extra=1), "specs and vocab"),
    (lambda lk, d: lk.update(specs="user_id"), "specs and vocab"),
    (lambda lk, d: d.update(lookups=[]), "specs and vocab"),
    (lambda lk, d: lk["specs"].append(7), "FeatureSpec"),
    (lambda lk, d: lk["specs"][0].update(bogus=1), "bogus"),
    (lambda lk, d: lk["specs"][0].update(buckets=0), "hashed table has no buckets"),
    (lambda lk, d: lk["specs"][0].update(buckets="x"), "buckets"),
    (lambda lk, d: lk["specs"][0].update(kind="numeric"), "user_id"),
    (lambda lk, d: lk["specs"][2].update(share="nosuch"), "nosuch"),
    (lambda lk, d: lk["specs"].append(lk["specs"][0]), "twice"),
    (lambda lk, d: lk["vocab"].update(user_id=["1"]), "'vocab'"),
    (lambda lk, d: lk["vocab"].update(item_id=[1, 2]), "'vocab'"),
    (lambda lk, d: lk["vocab"].update(item_id="12"), "'vocab'"),
    (lambda lk, d: lk["vocab"].pop("city"), "'vocab'"),
    (lambda lk, d: lk["vocab"]["item_id"].append(lk["vocab"]["item_id"][0]), "'vocab'"),
])
def test_from_dict_rejects_a_damaged_lookups_description(change, needle):
    data = _damaged(change)
    with pytest.raises(ValueError) as info:
        TableEncoder.from_dict(data)
    assert type(info.value) is ValueError
    text = str(info.value)
    assert "\n" not in text and needle in text, text

"""The generated funnel (mmoe.data.datasets.funnel): splits, files, determinism, rows that do
not depend on how many follow, histories that never see the future, the click rate; and the
oracle (mmoe.app.oracle): the true probabilities' metrics, which a model whose output is an
increasing function of the true probability reaches exactly."""

import json
import math
from dataclasses import asdict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from scipy.special import logit
from sklearn.metrics import roc_auc_score

from mmoe import TaskSpec, build_model
from mmoe.app.oracle import FUNNEL_TRUTH, oracle_metrics
from mmoe.app.spec import build_run_spec
from mmoe.config import InputSpec
from mmoe.data.datasets import funnel
from mmoe.data.datasets.funnel import (
    FunnelSpec,
    funnel_blocks,
    funnel_world,
    generate_funnel,
    read_generator_info,
    split_rows,
)
from mmoe.data.ids import group_codes
from mmoe.data.readers import read_table
from mmoe.metrics import evaluate, gauc
from mmoe.metrics.tasks import task_outputs

SPEC = FunnelSpec(rows=20_000, users=500, items=200, seed=0, shard_rows=5_000)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return generate_funnel(SPEC, tmp_path_factory.mktemp("funnel") / "f")


def _rows(spec):
    return pa.concat_tables(list(funnel_blocks(spec)))


# ---- splits and files --------------------------------------------------------------------------
@pytest.mark.parametrize("rows, valid, test, expected", [
    (1000, 0.1, 0.1, {"train": (0, 800), "valid": (800, 900), "test": (900, 1000)}),
    (1001, 0.1, 0.1, {"train": (0, 801), "valid": (801, 901), "test": (901, 1001)}),
    (10, 0.25, 0.3, {"train": (0, 5), "valid": (5, 7), "test": (7, 10)}),  # round(2.5) = 2
    (7, 0.05, 0.05, {"train": (0, 7), "valid": (7, 7), "test": (7, 7)}),
])
def test_split_rows(rows, valid, test, expected):
    spec = FunnelSpec(rows=rows, valid_fraction=valid, test_fraction=test)
    assert split_rows(spec) == expected


def test_generate_writes_the_splits_as_shards_a_config_and_the_settings(generated):
    assert sorted(p.name for p in generated.iterdir()) == [
        "generator.json", "mmoe.toml", "test", "train", "valid"]
    shards = sorted(p.name for p in (generated / "train").iterdir())
    assert shards == [f"part-0000{i}.parquet" for i in range(4)]  # 16000 rows, 5000 a file
    assert [pq.read_metadata(generated / "train" / s).num_rows for s in shards] == [
        5000, 5000, 5000, 1000]
    for split, (start, stop) in split_rows(SPEC).items():
        rows = read_table(generated / split, columns=["row"])["row"]
        assert rows.tolist() == list(range(start, stop)), split
    info = read_generator_info(generated)
    assert json.loads((generated / "generator.json").read_text()) == info
    assert info["spec"] == asdict(SPEC)
    assert {k: tuple(v) for k, v in info["splits"].items()} == split_rows(SPEC)
    assert set(info["columns"]) == set(pq.read_schema(generated / "test" /
                                                      "part-00000.parquet").names)
    run = build_run_spec(str(generated / "mmoe.toml"))
    assert [(t.name, t.kind, t.positive) for t in run.tasks] == [
        ("click", "binary", "1"), ("purchase", "binary", "1")]
    assert set(run.exclude) == {"row", "p_click", "p_buy_given_click", "p_click_buy"}
    assert run.group_by == "user_id"
    assert run.train == str(generated / "train") and run.valid == str(generated / "valid")


def test_same_seed_same_rows_other_seed_other_rows(generated, tmp_path):
    again = generate_funnel(SPEC, tmp_path / "again")
    for split in ("train", "valid", "test"):
        a = pa.concat_tables(pq.read_table(p) for p in sorted((generated / split).iterdir()))
        b = pa.concat_tables(pq.read_table(p) for p in sorted((again / split).iterdir()))
        assert a.equals(b), split
    small = FunnelSpec(rows=3000, users=100, items=50, seed=0)
    other = FunnelSpec(rows=3000, users=100, items=50, seed=1)
    assert _rows(small).equals(_rows(small))
    a, b = _rows(small).to_pandas(), _rows(other).to_pandas()
    assert (a["user_id"] != b["user_id"]).mean() > 0.9
    assert not np.allclose(a["p_click"], b["p_click"])


@pytest.mark.parametrize("block", [funnel.BLOCK, 256])
def test_the_first_rows_do_not_depend_on_how_many_follow(monkeypatch, block):
    monkeypatch.setattr(funnel, "BLOCK", block)  # 256: many blocks, histories carried
    short = _rows(FunnelSpec(rows=700, users=60, items=40, seed=3))
    long = _rows(FunnelSpec(rows=3000, users=60, items=40, seed=3))
    assert short.num_rows == 700 and long.num_rows == 3000
    assert short.equals(long.slice(0, 700))


# ---- what the rows hold ------------------------------------------------------------------------
@pytest.mark.parametrize("block", [funnel.BLOCK, 1024])
def test_history_holds_only_the_users_earlier_clicks(monkeypatch, block):
    """Replaying the log row by row: each row's history is the last history_len items its
    user clicked strictly before it, oldest first."""
    monkeypatch.setattr(funnel, "BLOCK", block)
    spec = FunnelSpec(rows=6000, users=150, items=80, seed=2, history_len=4)
    df = _rows(spec).to_pandas()
    clicked: dict[int, list[int]] = {}
    for user, item, click, history in zip(df["user_id"], df["item_id"], df["click"],
                                          df["history"], strict=True):
        assert list(history) == clicked.get(user, [])[-4:]
        if click:
            clicked.setdefault(user, []).append(int(item))
    lengths = df["history"].map(len)
    assert lengths.max() == 4 and (lengths > 0).sum() > 1000  # histories fill up
    assert sum(map(len, clicked.values())) == df["click"].sum()


def test_labels_are_draws_of_the_true_probabilities_at_the_documented_rates():
    df = _rows(FunnelSpec(rows=50_000, seed=0)).to_pandas()  # the default world
    n = len(df)
    assert 0.10 < df["click"].mean() < 0.17  # near 13%
    assert 0.12 < df["purchase"].sum() / df["click"].sum() < 0.3  # near 20% of clicks
    assert (df["purchase"] <= df["click"]).all()
    for label, p in (("click", df["p_click"]), ("purchase", df["p_click_buy"])):
        se = math.sqrt(float((p * (1 - p)).sum())) / n
        assert abs(df[label].mean() - p.mean()) < 4 * se, label
    np.testing.assert_allclose(df["p_click_buy"], df["p_click"] * df["p_buy_given_click"],
                               rtol=1e-6)
    assert set(df["device"]) == {"ios", "android", "web"}
    assert df["position"].between(1, 8).all()


@pytest.mark.parametrize(("shared", "rho"), [(2, 0.0), (0, 0.0), (5, 0.0), (2, 0.7)])
def test_the_world_is_the_one_the_rows_were_drawn_from(shared, rho):
    """funnel_world(spec) gives the latents and item facts the rows' true probabilities were
    computed from: the documented equations over them give p_click and p_buy_given_click;
    the attribute columns are the world's (none without attributes). Overlaps: the default,
    unrelated tasks, the same latents; and a world with attributes."""
    spec = FunnelSpec(rows=4000, users=80, items=60, seed=5, shared_dims=shared,
                      attribute_share=rho)
    df = _rows(spec).to_pandas()
    world = funnel_world(spec)
    a, b = world.user_latent[df["user_id"]], world.item_latent[df["item_id"]]
    k = 10 - shared  # 5 click and 5 purchase coordinates, `shared` of them in both
    assert a.shape[1] == b.shape[1] == k
    r_c = (a[:, :5] * b[:, :5]).sum(1) / math.sqrt(5)  # S_c: the first 5 of k
    r_p = (a[:, k - 5:] * b[:, k - 5:]).sum(1) / math.sqrt(5)  # S_p: the last 5
    assert (spec.click_latents, spec.purchase_latents) == (slice(0, 5), slice(k - 5, k))
    z = lambda v: (v - v.mean()) / v.std()  # noqa: E731
    z_pop = z(np.log(world.item_popularity))[df["item_id"]]
    z_price = z(world.log_price)[df["item_id"]]
    device = df["device"].map({"ios": 0, "android": 1, "web": 2}).to_numpy()
    hour = df["hour"].str[1:].astype(int).to_numpy()
    click = (-5.5 + 1.5 * r_c + 0.3 * z_pop - 0.15 * (df["position"] - 1)
             + funnel.DEVICE_CLICK[device] + 0.3 * np.sin(2 * np.pi * hour / 24))
    buy = (-3.0 + 1.5 * r_p - 0.5 * z_price
           + world.category_effect[world.item_category[df["item_id"]]] + funnel.DEVICE_BUY[device])
    np.testing.assert_allclose(df["p_click"], 1 / (1 + np.exp(-click)), rtol=1e-5)
    np.testing.assert_allclose(df["p_buy_given_click"], 1 / (1 + np.exp(-buy)), rtol=1e-5)
    assert (df["item_category"] == "c" + pd.Series(world.item_category[df["item_id"]]).astype(
        str)).all()
    attributes = ["user_age", "user_gender", "user_city", "item_brand"]
    assert set(df.columns) == set(funnel.columns(spec))
    if rho == 0:
        assert not set(attributes) & set(df.columns)
        assert world.user_attributes == world.item_attributes == {}
        return
    codes = {**world.user_attributes, **world.item_attributes}
    assert set(codes) == set(attributes)
    assert (df["user_age"] == funnel.AGE_GROUPS[codes["user_age"][df["user_id"]]]).all()
    assert (df["user_gender"] == funnel.GENDERS[codes["user_gender"][df["user_id"]]]).all()
    assert (df["user_city"] == "t" + pd.Series(codes["user_city"][df["user_id"]]).astype(
        str)).all()
    assert (df["item_brand"] == "b" + pd.Series(codes["item_brand"][df["item_id"]]).astype(
        str)).all()


def test_attributes_explain_their_share_of_the_latents():
    """a_u = sqrt(rho) A(attributes) + sqrt(1 - rho) e_u exactly, with e_u the latents of the
    world without attributes (drawn as it always was) and A the latents at rho = 1, the same
    for every user of one age, gender and city (items: one category and brand); A's
    coordinates of about unit variance, so rho is the share the attributes explain."""
    def world(rho):
        return funnel_world(FunnelSpec(users=3000, items=2000, cities=20, brands=50, categories=10,
                                       attribute_share=rho, seed=3))
    plain, attrs, mixed = world(0.0), world(1.0), world(0.6)
    for name in ("user_latent", "item_latent"):
        np.testing.assert_allclose(getattr(mixed, name),
                                   math.sqrt(0.6) * getattr(attrs, name)
                                   + math.sqrt(0.4) * getattr(plain, name), atol=1e-12)
        assert 0.7 < getattr(attrs, name).var() < 1.3
    np.testing.assert_array_equal(plain.user_activity, mixed.user_activity)
    for latent, cells in ((attrs.user_latent, attrs.user_attributes),
                          (attrs.item_latent, {"category": attrs.item_category,
                                               **attrs.item_attributes})):
        cells = pd.DataFrame(cells)
        groups = cells.groupby(list(cells.columns)).indices.values()
        assert len(groups) < len(cells) / 2  # most share their cell with others
        for members in groups:
            np.testing.assert_array_equal(latent[members], latent[members[:1]].repeat(
                len(members), 0))
        assert len({tuple(latent[m[0]].round(9)) for m in groups}) == len(groups)


# ---- the oracle ---------------------------------------------------------------------------
def _test_split(generated):
    df = read_table(generated / "test")
    return df, group_codes(df["user_id"])


def test_oracle_metrics_are_the_true_probabilities_metrics(generated):
    oracle = oracle_metrics(generated / "test")
    df, groups = _test_split(generated)
    p = df[list(FUNNEL_TRUTH.values())].to_numpy(np.float64)
    labels = df[list(FUNNEL_TRUTH)].to_numpy(np.float64)
    tasks = [TaskSpec(name) for name in FUNNEL_TRUTH]
    expected = evaluate(tasks, [slice(0, 1), slice(1, 2)], logit(p), labels, groups=groups)
    assert oracle.keys() == expected.keys() == {"click", "purchase"}
    for task in oracle:
        assert oracle[task].keys() == expected[task].keys()
        for name, value in expected[task].items():
            assert oracle[task][name] == pytest.approx(value, abs=1e-12), (task, name)
    # and from scikit-learn directly: AUC of the true probability, GAUC over users
    for task, column in FUNNEL_TRUTH.items():
        y = df[task].to_numpy()
        assert oracle[task]["auc"] == pytest.approx(roc_auc_score(y, df[column]), abs=1e-12)
        assert oracle[task]["gauc"] == pytest.approx(
            _gauc_sklearn(df["user_id"].to_numpy(), y, df[column].to_numpy()), abs=1e-12)
    assert 0.75 < oracle["click"]["auc"] < 0.95
    assert oracle["click"]["gauc_groups"] > 30  # enough users with both classes for GAUC to test
    ungrouped = oracle_metrics(generated / "test", group_by=None)
    assert "gauc" not in ungrouped["click"]
    assert ungrouped["click"]["auc"] == oracle["click"]["auc"]


def _gauc_sklearn(g, y, s):
    total = weight = 0.0
    for key in np.unique(g):
        rows = g == key
        if 0 < y[rows].sum() < rows.sum():
            total += rows.sum() * roc_auc_score(y[rows], s[rows])
            weight += rows.sum()
    return total / weight


def _truth_model(column, sign=1.0):
    """A single_task model reading the true probability alone, whose output is
    ``sign * 4 * 0.5 * p``: one hidden unit (a network needs one: expert_units cannot be
    empty), a linear head (tower_units=()).

    The acceptance is about order: AUC and GAUC read only the order of the predictions, so
    every model whose output is a strictly increasing function of the true probability
    reaches the oracle's, and no model can rank better. Such a function is set here by hand
    (training would only find one approximately): positive weights that are powers of two
    and zero biases make each float32 operation exact (and ReLU the identity on p >= 0),
    so no two different probabilities get the same output, and the order is p's exactly.
    """
    torch.manual_seed(0)
    model = build_model("single_task", InputSpec(numeric=(column,)), [TaskSpec("y")],
                        expert_units=(1,), tower_units=())
    params = dict(model.named_parameters())
    assert {name: tuple(p.shape) for name, p in params.items()} == {
        "backbone.nets.layers.0.weight": (1, 1, 1), "backbone.nets.layers.0.bias": (1, 1),
        "towers.out.weight": (1, 1, 1), "towers.out.bias": (1, 1)}
    with torch.no_grad():
        params["backbone.nets.layers.0.weight"].fill_(4.0)
        params["towers.out.weight"].fill_(0.5 * sign)
        params["backbone.nets.layers.0.bias"].zero_()
        params["towers.out.bias"].zero_()
    return model.eval()


def test_a_model_fed_the_true_probability_reaches_the_oracle_exactly(generated):
    oracle = oracle_metrics(generated / "test")
    df, groups = _test_split(generated)
    for task, column in FUNNEL_TRUTH.items():
        p = torch.tensor(df[column].to_numpy(np.float32)).unsqueeze(1)  # as stored
        model = _truth_model(column)
        with torch.no_grad():
            logits = model(p).double().numpy()
        assert np.array_equal(logits[:, 0], 2.0 * p[:, 0].double().numpy())  # exact
        got = evaluate([TaskSpec(task)], [slice(0, 1)], logits,
                       df[[task]].to_numpy(np.float64), groups=groups)[task]
        assert abs(got["auc"] - oracle[task]["auc"]) <= 1e-12, task
        assert abs(got["gauc"] - oracle[task]["gauc"]) <= 1e-12, task
        assert (got["gauc_groups"], got["gauc_skipped"]) == (oracle[task]["gauc_groups"],
                                                            oracle[task]["gauc_skipped"])
        # the scale is wrong, so the log-loss is not the oracle's; the order is what counts
        assert got["logloss"] > oracle[task]["logloss"]
        # the same model with a decreasing output ranks backwards: 1 - AUC
        with torch.no_grad():
            backwards = _truth_model(column, sign=-1.0)(p).double().numpy()
        y = df[task].to_numpy()
        assert roc_auc_score(y, task_outputs(TaskSpec(task), backwards)) == pytest.approx(
            1 - oracle[task]["auc"], abs=1e-12)
        assert gauc(groups, y, -p[:, 0].numpy())[0] == pytest.approx(
            1 - oracle[task]["gauc"], abs=1e-12)


def test_oracle_rejects_columns_that_are_not_probabilities(tmp_path):
    df = pd.DataFrame({"click": [0, 1], "purchase": [0, 0], "p_click": [0.2, 1.5],
                       "p_click_buy": [0.0, 0.1], "user_id": [1, 2]})
    df.to_parquet(tmp_path / "bad.parquet", index=False)
    with pytest.raises(ValueError, match="must lie in"):
        oracle_metrics(tmp_path / "bad.parquet")

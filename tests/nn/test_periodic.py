"""Periodic numeric embeddings (Gorishniy et al. 2022, PLR): the formula, pass-through of
the other columns, gradients to the frequencies, and models that use them (width, save and
load, old descriptions without them)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe import TaskSpec, build_model
from mmoe.config import InputSpec
from mmoe.config.inputs import PERIODIC_DIM
from mmoe.data.encoders import TableEncoder
from mmoe.nn import PeriodicEmbedding
from mmoe.train.checkpoint import load_model, save_checkpoint


def test_the_formula_column_by_column():
    torch.manual_seed(0)
    emb = PeriodicEmbedding(3, (2, 0), frequencies=2, dim=3, sigma=0.5)
    x = torch.tensor([[0.3, -1.0, 2.0], [1.5, 4.0, -0.25]])
    out = emb(x)
    assert out.shape == (2, 1 + 2 * 3)
    torch.testing.assert_close(out[:, 0], x[:, 1])  # the plain column passes through
    for slot, column in enumerate((2, 0)):
        c = emb.frequencies[slot]  # (k,)
        angle = 2 * math.pi * x[:, column, None] * c  # (B, k)
        v = torch.cat([torch.cos(angle), torch.sin(angle)], 1)  # (B, 2k)
        want = torch.relu(v @ emb.weight[slot] + emb.bias[slot])  # (B, d)
        torch.testing.assert_close(out[:, 1 + 3 * slot:1 + 3 * (slot + 1)], want)


def test_gradients_reach_the_frequencies():
    emb = PeriodicEmbedding(2, (0,), frequencies=4, dim=4, sigma=1.0)
    emb(torch.randn(16, 2)).sum().backward()
    assert emb.frequencies.grad is not None and emb.frequencies.grad.abs().sum() > 0


def _table(n=300):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.uniform(-2, 2, n),
                         "y": rng.integers(0, 2, n)})


def test_a_periodic_encoder_gives_z_scores_and_a_wider_model(tmp_path):
    df = _table()
    enc = TableEncoder([TaskSpec("y")], numeric_encoding="periodic").fit(df)
    spec = enc.input_spec()
    assert spec.periodic == ("a", "b") and spec.width == 2 * PERIODIC_DIM
    z = enc.transform(df, labels=False).numeric.numpy()
    np.testing.assert_allclose(z[:, 0], (df["a"] - df["a"].mean()) / df["a"].std(ddof=0),
                               atol=1e-5)
    torch.manual_seed(0)
    model = build_model("mmoe", spec, enc.tasks, num_experts=2).eval()
    x = enc.transform(df, labels=False)
    path = save_checkpoint(tmp_path / "m.pt", model)
    back, _ = load_model(path)
    with torch.inference_mode():
        torch.testing.assert_close(back(*x.inputs()), model(*x.inputs()))
    assert any(n.startswith("periodic.") for n, _ in back.named_parameters())


def test_descriptions_without_periodic_still_load():
    data = InputSpec(numeric=("a",)).to_dict()
    del data["periodic"]
    assert InputSpec.from_dict(data).periodic == ()
    with pytest.raises(ValueError, match="periodic must name numeric columns"):
        InputSpec(numeric=("a",), periodic=("b",))


def test_feature_groups_see_a_periodic_columns_embedding():
    from mmoe.models.expert_allocation import input_positions

    spec = InputSpec(numeric=("a", "b", "c"), categorical=(("k", 4),), embedding_dim=2,
                     periodic=("b",))
    pos = input_positions(spec)
    assert pos["a"] == [0] and pos["c"] == [1]
    assert pos["b"] == list(range(2, 2 + PERIODIC_DIM))
    assert pos["k"] == [2 + PERIODIC_DIM, 3 + PERIODIC_DIM] and spec.width == 4 + PERIODIC_DIM

"""The default dropout (``ModelConfig.dropout = None``, ``gate_dropout = None``) is chosen from
the training rows: 0.1 in the experts, towers and gates of a model trained on 10,001 to
100,000 rows, none otherwise; a value that is set is kept; the model directory records what
was used."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe import ModelConfig
from mmoe.app.estimator import MultiTaskEstimator
from mmoe.app.fit import for_rows, train_model_dir
from mmoe.app.spec import build_run_spec
from mmoe.config.model import MEDIUM_DROPOUT, MEDIUM_ROWS
from mmoe.nn import Gates
from mmoe.train.model_dir import load_model_dir

SHAPE = {"num_experts": 2, "expert_units": (4,), "tower_units": (2,), "epochs": 1,
         "ensemble": 1}


def _table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                         "y": (x[:, 0] + x[:, 1] > 0).astype(int),
                         "z": x[:, 0] - x[:, 2] + rng.normal(size=n)})


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    """A table just above the band's lower end (10,001 rows) and a small one."""
    d = tmp_path_factory.mktemp("rows")
    _table(MEDIUM_ROWS[0] + 1).to_parquet(d / "medium.parquet")
    _table(2_000).to_parquet(d / "small.parquet")
    _table(500, seed=1).to_parquet(d / "valid.parquet")
    return d


def _spec(d, name, **flags):
    return build_run_spec(train=str(d / f"{name}.parquet"), valid=str(d / "valid.parquet"),
                          tasks=["y:binary", "z:regression"], **{**SHAPE, **flags})


def _dropouts(model) -> tuple[set[float], set[float]]:
    layers = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    gates = {m.dropout for m in model.modules() if isinstance(m, Gates)}
    return layers, gates


def test_the_band_and_a_set_value():
    low, high = MEDIUM_ROWS
    rows = (low, low + 1, high, high + 1, None)
    assert [ModelConfig().for_rows(r, gated=True).dropout for r in rows] == \
        [0.0, MEDIUM_DROPOUT, MEDIUM_DROPOUT, 0.0, 0.0]
    assert [ModelConfig().for_rows(r, gated=False).gate_dropout for r in rows] == [0.0] * 5
    set_ = ModelConfig(dropout=0.0, gate_dropout=0.3).for_rows(low + 1, gated=True)
    assert (set_.dropout, set_.gate_dropout) == (0.0, 0.3)
    with pytest.raises(ValueError, match="dropout must be a finite number in"):
        ModelConfig(dropout=-0.1)


def test_a_medium_table_trains_as_if_the_dropouts_were_set(medium, tmp_path):
    default = train_model_dir(_spec(medium, "medium"), tmp_path / "default")
    explicit = train_model_dir(_spec(medium, "medium", dropout=0.1, gate_dropout=0.1),
                               tmp_path / "explicit")
    assert default["valid"] == explicit["valid"]
    md = load_model_dir(tmp_path / "default")
    assert _dropouts(md.model) == ({MEDIUM_DROPOUT}, {MEDIUM_DROPOUT})
    saved = json.loads((tmp_path / "default" / "config.json").read_text())["model"]
    assert (saved["dropout"], saved["gate_dropout"]) == (MEDIUM_DROPOUT, MEDIUM_DROPOUT)
    other = load_model_dir(tmp_path / "explicit").model.state_dict()
    for name, w in md.model.state_dict().items():
        assert torch.equal(w, other[name]), name


def test_a_model_without_gates_gets_the_dropout_alone(medium, tmp_path):
    train_model_dir(_spec(medium, "medium", model="single_task"), tmp_path / "st")
    saved = json.loads((tmp_path / "st" / "config.json").read_text())["model"]
    assert (saved["dropout"], saved["gate_dropout"]) == (MEDIUM_DROPOUT, 0.0)
    assert _dropouts(load_model_dir(tmp_path / "st").model) == ({MEDIUM_DROPOUT}, set())


def test_small_tables_and_set_values_get_none(medium, tmp_path):
    train_model_dir(_spec(medium, "small"), tmp_path / "small")
    saved = json.loads((tmp_path / "small" / "config.json").read_text())["model"]
    assert (saved["dropout"], saved["gate_dropout"]) == (0.0, 0.0)
    spec = _spec(medium, "medium", dropout=0.0)
    assert for_rows(spec, MEDIUM_ROWS[0] + 1).model == replace(
        spec.model, dropout=0.0, gate_dropout=MEDIUM_DROPOUT)


def test_the_estimator_chooses_as_mmoe_train_does(medium):
    frame = pd.read_parquet(medium / "medium.parquet")
    est = MultiTaskEstimator(tasks=["y:binary", "z:regression"], num_experts=2,
                             expert_units=(4,), tower_units=(2,), epochs=1,
                             ensemble=1).fit(frame, valid=pd.read_parquet(medium / "valid.parquet"))
    assert est.dropout is None  # the parameter as given (scikit-learn's clone keeps it)
    assert _dropouts(est.model_) == ({MEDIUM_DROPOUT}, {MEDIUM_DROPOUT})

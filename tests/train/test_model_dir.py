"""Model directories: round trip, atomic replace, refusal of other versions and corruption."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe import TaskSpec, build_model
from mmoe.data.encoders import TableEncoder
from mmoe.train import predict_logits
from mmoe.train.model_dir import load_model_dir, save_model_dir


@pytest.fixture
def parts():
    df = pd.DataFrame({"a": np.linspace(0, 1, 20), "c": ["x", "y"] * 10, "y": [0, 1] * 10})
    enc = TableEncoder([TaskSpec("y", "binary")]).fit(df)
    torch.manual_seed(0)
    model = build_model("mmoe", enc.input_spec(), enc.tasks, num_experts=2)
    return model, enc, enc.transform(df, labels=False)


def test_round_trip_identical_predictions(parts, tmp_path):
    model, enc, table = parts
    save_model_dir(tmp_path / "m", model, enc, {"k": 1}, {"valid": {}})
    md = load_model_dir(tmp_path / "m")
    assert torch.equal(predict_logits(md.model, table), predict_logits(model, table))
    assert md.config["k"] == 1 and md.encoder.to_dict() == enc.to_dict()
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["format"] == "mmoe-model-dir" and "model.pt" in manifest["files"]


def test_refuses_existing_and_failed_write_keeps_old(parts, tmp_path):
    model, enc, _ = parts
    out = tmp_path / "m"
    save_model_dir(out, model, enc, {"v": "old"}, {})
    with pytest.raises(ValueError, match="already exists"):
        save_model_dir(out, model, enc, {"v": "new"}, {})

    def boom(stage):
        raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError):
        save_model_dir(out, model, enc, {"v": "new"}, {}, write_extra=boom, overwrite=True)
    assert load_model_dir(out).config["v"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging left behind
    save_model_dir(out, model, enc, {"v": "new"}, {}, overwrite=True)
    assert load_model_dir(out).config["v"] == "new"
    (tmp_path / "empty").mkdir()
    save_model_dir(tmp_path / "empty", model, enc, {}, {})  # an empty directory is fine


def test_refusals(parts, tmp_path):
    model, enc, _ = parts
    out = save_model_dir(tmp_path / "m", model, enc, {}, {})
    (out / "encoder.json").write_text((out / "encoder.json").read_text().replace("x", "z"))
    with pytest.raises(ValueError, match="corrupted: file 'encoder.json' does not match"):
        load_model_dir(out)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model_dir(tmp_path / "none")
    with pytest.raises(ValueError, match="not an mmoe model directory"):
        load_model_dir(tmp_path)

"""Seed ensembles (--ensemble K): members equal single runs of their seeds, the ensemble
predicts their mean logits everywhere a model is used, and a killed run resumes exactly."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from mmoe import MultiTaskEstimator, TaskSpec, TrainConfig, build_model
from mmoe.app import fit as fit_module
from mmoe.app.ensemble import fit_members
from mmoe.app.export import export_model
from mmoe.app.fit import partial_dir, train_model_dir
from mmoe.app.predict import predict_frame
from mmoe.app.spec import build_run_spec
from mmoe.config._fields import MAX_SEED
from mmoe.models.ensemble import SeedEnsemble
from mmoe.train import FitResult, Trainer
from mmoe.train.checkpoint import load_model, save_checkpoint
from mmoe.train.model_dir import load_model_dir

from .conftest import make_table

TASKS = ["buys:binary:yes", "spend:regression", "segment:multiclass"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ens")
    make_table(300, 0).to_csv(d / "train.csv", index=False)
    make_table(120, 1).to_csv(d / "valid.csv", index=False)
    return d


def _spec(data, seed=5, **kw):
    return build_run_spec(train=str(data / "train.csv"), valid=str(data / "valid.csv"),
                          tasks=TASKS, id_columns=["user_id"], epochs=2, batch_size=32,
                          threads=1, seed=seed, **kw)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_members_are_the_single_runs_of_their_seeds(data, tmp_path):
    metrics = train_model_dir(_spec(data, ensemble=3), tmp_path / "ens", progress=False)
    md = load_model_dir(tmp_path / "ens")
    assert isinstance(md.model, SeedEnsemble) and len(md.model.members) == 3
    assert [m["seed"] for m in metrics["members"]] == [5, 6, 7]
    assert json.loads((tmp_path / "ens" / "metrics.json").read_text())["members"] \
        == metrics["members"]
    for k in range(3):
        train_model_dir(_spec(data, seed=5 + k, ensemble=1), tmp_path / f"one{k}",
                        progress=False)
        single = load_model_dir(tmp_path / f"one{k}").model
        member = md.model.members[k]
        for name, w in single.state_dict().items():
            assert torch.equal(member.state_dict()[name], w), (k, name)
    # the ensemble predicts the mean of its members' logits, in every output form
    frame = make_table(50, 9)
    got = predict_frame(md.model, md.encoder, frame)
    table = md.encoder.transform(frame)
    with torch.no_grad():
        inputs = (table.numeric, table.categorical, table.ids)
        mean = torch.stack([m(*inputs) for m in md.model.members]).mean(0)
    assert torch.allclose(md.model(*inputs), mean, atol=1e-6)
    p = torch.sigmoid(mean[:, md.model.task_slices[0]]).squeeze(1).numpy()
    np.testing.assert_allclose(got["buys"].to_numpy(), p, atol=1e-6)
    assert metrics["valid"]["buys"]["auc"] > 0.8
    # exported from raw columns, the ensemble is one graph with `mmoe predict`'s outputs
    pytest.importorskip("onnxruntime")
    assert export_model(tmp_path / "ens", "onnx", tmp_path / "ens.onnx", raw=True) <= 1e-5


def test_a_killed_ensemble_resumes_to_the_uninterrupted_result(data, tmp_path, monkeypatch):
    spec = _spec(data, ensemble=2)
    train_model_dir(spec, tmp_path / "whole", progress=False)

    class Killed(Trainer):
        """Dies after the first epoch of the second member (its checkpoint written)."""

        def fit(self, train, valid=None, resume=False):
            if self.config.seed == 6:
                for _ in self.iter_epochs(train, valid, resume):
                    raise RuntimeError("killed")
            return super().fit(train, valid, resume)

    monkeypatch.setattr(fit_module, "Trainer", Killed)
    out = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="killed"):
        train_model_dir(spec, out, progress=False)
    left = sorted(p.name for p in partial_dir(out).iterdir())
    assert left == ["checkpoint.pt", "member-0.pt"], left
    monkeypatch.setattr(fit_module, "Trainer", Trainer)
    train_model_dir(spec, out, progress=False, resume=True)
    whole, resumed = load_model_dir(tmp_path / "whole"), load_model_dir(out)
    for name, w in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], w), name
    assert whole.metrics["members"] == resumed.metrics["members"]
    assert not partial_dir(out).exists()


def test_an_ensemble_round_trips_through_a_checkpoint(tmp_path):
    tasks = [TaskSpec("y", "binary"), TaskSpec("z", "regression")]
    torch.manual_seed(0)
    ens = SeedEnsemble([build_model("mmoe", 4, tasks) for _ in range(3)]).eval()
    back, _ = load_model(save_checkpoint(tmp_path / "e.pt", ens))
    assert isinstance(back, SeedEnsemble) and back.describe() == ens.describe()
    x = torch.randn(5, 4)
    assert torch.equal(back(x), ens(x))
    with pytest.raises(ValueError, match="at least 2 members"):
        SeedEnsemble([build_model("mmoe", 4, tasks)])
    with pytest.raises(ValueError, match="share their config"):
        SeedEnsemble([build_model("mmoe", 4, tasks), build_model("omoe", 4, tasks)])


def test_estimator_ensemble_saves_and_loads(tmp_path):
    frame = make_table(300, 0)
    est = MultiTaskEstimator(tasks=TASKS, epochs=2, batch_size=32, threads=1, ensemble=2,
                             id_columns=["user_id"])
    est.fit(frame)
    assert isinstance(est.model_, SeedEnsemble)
    assert [m["seed"] for m in est.metrics_["members"]] == [0, 1]
    est.save(tmp_path / "m")
    back = MultiTaskEstimator.load(tmp_path / "m")
    assert back.ensemble == 2
    test = make_table(40, 3)
    np.testing.assert_allclose(back.predict_proba(test)["buys"].to_numpy(),
                               est.predict_proba(test)["buys"].to_numpy(), atol=1e-7)


@pytest.mark.default_ensemble
def test_small_tables_get_five_seeds_by_default(data, tmp_path):
    """Left unset, the ensemble is sized from the training rows: five models up to 10,000
    rows, one above or when the rows are unknown (a CSV stream); a set value is kept."""
    calls = []

    def fit(member, _):
        calls.append(member.training.seed)
        return build_model("mmoe", 4, [TaskSpec("y", "binary")]), FitResult([], 1, 0.5, "y")

    spec = build_run_spec(train="t.csv", tasks=["y:binary"], seed=3)
    for rows, seeds in ((10_000, [3, 4, 5, 6, 7]), (10_001, [3]), (None, [3])):
        calls.clear()
        model, result = fit_members(spec, fit, rows)
        assert calls == seeds and isinstance(model, SeedEnsemble) == (len(seeds) > 1)
        assert [m["seed"] for m in result.members or []] == (seeds if len(seeds) > 1 else [])
    calls.clear()
    lines = []
    fit_members(replace(spec, training=replace(spec.training, ensemble=2)), fit, 10_001,
                announce=lines.append)
    assert calls == [3, 4] and lines == ["a seed ensemble of 2 models, seeds 3..4 (as set)",
                                         "model 1 of 2 (seed 3)", "model 2 of 2 (seed 4)"]
    lines.clear()
    fit_members(spec, fit, 500, announce=lines.append)
    assert lines[:2] == ["a seed ensemble of 5 models, seeds 3..7 (the default for at most "
                         "10,000 training rows; --ensemble 1 trains one)", "model 1 of 5 (seed 3)"]
    # the default's seeds stop at the largest seed; a set ensemble past it is an error
    assert [TrainConfig(seed=MAX_SEED - k).members(500) for k in (0, 1, 4)] == [1, 2, 5]
    with pytest.raises(ValueError, match="exceed"):
        TrainConfig(seed=MAX_SEED, ensemble=2)
    # end to end: the 300-row table's default run is five members
    metrics = train_model_dir(_spec(data, seed=0), tmp_path / "auto", progress=False)
    assert [m["seed"] for m in metrics["members"]] == [0, 1, 2, 3, 4]
    assert len(load_model_dir(tmp_path / "auto").model.members) == 5


def test_ensemble_setting_is_checked():
    with pytest.raises(ValueError, match="ensemble must be an integer in \\[1, 64\\]"):
        build_run_spec(train="t.csv", tasks=["y:binary"], ensemble=0)

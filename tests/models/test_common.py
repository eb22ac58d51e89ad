"""One suite over every registered model."""

import pytest
import torch

from mmoe import InputSpec, TaskSpec, TrainConfig, available_models, build_model
from mmoe.data.table import TensorTable
from mmoe.nn import StackedMLP
from mmoe.nn.encoder import TABLE_INIT_STD
from mmoe.train import Trainer, load_model, save_checkpoint

INPUTS = InputSpec(numeric=("n0", "n1", "n2"), categorical=(("c0", 4), ("c1", 3)),
                   embedding_dim=2)
# the last task is a funnel step after "bin" (esmm and aitm need one; the others learn it
# as a conditional)
TASKS = (TaskSpec("bin", "binary"), TaskSpec("reg", "regression"),
         TaskSpec("cls", "multiclass", classes=("x", "y", "z")),
         TaskSpec("later", "binary", after="bin"))
MODELS = sorted(available_models())


def _batch(b: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, generator=g), torch.randint(0, 3, (b, 2), generator=g)


def _build(name: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model(name, INPUTS, TASKS, num_experts=3, expert_units=(6,),
                       tower_units=(4,), **kw)


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_is_batch_by_logits(name):
    model = _build(name)
    assert model(*_batch(7)).shape == (7, 1 + 1 + 3 + 1)
    assert [s.stop - s.start for s in model.task_slices] == [1, 1, 3, 1]


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name):
    model = _build(name)
    out = model(*_batch(16), parts=True)
    loss = out.logits.square().sum()
    penalty = out.aux_loss
    if penalty is not None:
        loss = loss + penalty
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert p.grad.abs().sum() > 0, f"{pname} got an all-zero gradient"


@pytest.mark.parametrize("name", MODELS)
def test_batch_of_one_works_in_train_and_eval_mode(name):
    model = _build(name, dropout=0.1)
    assert model(*_batch(1)).shape == (1, 6)
    model.eval()
    one = model(*_batch(1))
    # eval mode is row-independent: the row alone equals the row inside a batch
    num, cat = _batch(4)
    num[0], cat[0] = _batch(1)[0][0], _batch(1)[1][0]
    torch.testing.assert_close(model(num, cat)[0], one[0])


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_gives_identical_weights(name):
    a, b, c = _build(name, seed=1), _build(name, seed=1), _build(name, seed=2)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert any(not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(),
                                                          c.state_dict().values(), strict=True))


@pytest.mark.parametrize("name", MODELS)
def test_save_load_gives_identical_predictions(name, tmp_path):
    model = _build(name, batch_norm=True).eval()
    with torch.no_grad():  # make the batch-norm statistics non-trivial so they must be saved
        model.norm.running_mean.uniform_(-1, 1)
    save_checkpoint(tmp_path / "m.pt", model, extras={"note": "hi"})
    loaded, extras = load_model(tmp_path / "m.pt")
    assert extras == {"note": "hi"}
    x = _batch(9, seed=5)
    assert torch.equal(loaded(*x), model(*x))
    assert loaded.describe() == model.describe()


NO_MLP = {"cross_stitch", "tensor_factorization"}  # their own layer loops: no hidden_norm


@pytest.mark.parametrize("name", MODELS)
def test_hidden_norm_adds_batch_norm_to_every_mlp_and_starts_categoricals_small(name):
    if name in NO_MLP:
        with pytest.raises(ValueError, match=f"'{name}' has no MLP layers.*drop hidden_norm"):
            _build(name, hidden_norm=True)
        return
    plain, normed = _build(name, seed=3), _build(name, seed=3, hidden_norm=True)
    extra = {k: v for k, v in normed.state_dict().items() if k not in plain.state_dict()}
    assert extra and all(".norms." in k for k in extra)  # batch norm only, nothing else added
    for k, v in plain.state_dict().items():  # the same draws; the categoricals scaled
        scale = TABLE_INIT_STD if k == "encoder.embedding.weight" else 1.0
        torch.testing.assert_close(normed.state_dict()[k], v * scale, rtol=0, atol=0)
    towers = [m for m in normed.towers.modules() if isinstance(m, StackedMLP)]
    assert towers and all(m.norms is not None for m in towers)
    normed.train()
    normed(*_batch(16))  # a training step's forward moves every running mean
    moved = [k for k, v in normed.state_dict().items() if k.endswith("running_mean")
             and ".norms." in k and v.abs().sum() > 0]
    assert len(moved) == sum(k.endswith("running_mean") for k in extra)


@pytest.mark.parametrize("name", ["mmoe", "ple", "shared_bottom"])
def test_hidden_norm_save_load_gives_identical_predictions(name, tmp_path):
    model = _build(name, hidden_norm=True)
    model.train()
    for seed in range(3):
        model(*_batch(32, seed=seed))
    model.eval()
    save_checkpoint(tmp_path / "m.pt", model)
    loaded, _ = load_model(tmp_path / "m.pt")
    x = _batch(9, seed=5)
    assert torch.equal(loaded(*x), model(*x))


def test_hidden_norm_trains_past_a_last_batch_of_one_row():
    # 33 rows in batches of 16: the last batch of one row would fail in batch norm
    g = torch.Generator().manual_seed(0)
    x = torch.randn(33, 4, generator=g)
    table = TensorTable.from_arrays(x, torch.stack([(x[:, 0] > 0).float(), x[:, 1]], 1))
    tasks = (TaskSpec("a", "binary"), TaskSpec("b", "regression"))
    torch.manual_seed(0)
    model = build_model("mmoe", 4, tasks, num_experts=2, expert_units=(8,), tower_units=(4,),
                        hidden_norm=True)
    assert model.config.normalises_batches and not model.config.batch_norm
    result = Trainer(model, TrainConfig(epochs=2, batch_size=16, restore_best=False)).fit(table)
    assert [r["step"] for r in result.history] == [2, 4]  # two steps an epoch, not three


@pytest.mark.parametrize("name", MODELS + ["esmm+mmoe", "aitm+ple"])
def test_the_registry_knows_before_building_which_models_have_gates(name):
    """The default gate dropout is chosen before the model is built (is_gated); a model whose
    registry entry got it wrong would fail on an unknown-gates check or lose its default."""
    from mmoe import ModelConfig
    from mmoe.models.registry import is_gated

    name, _, bottom = name.partition("+")
    options = {"bottom": bottom} if bottom else {}
    model = _build(name, options=options)
    assert is_gated(ModelConfig(name, options=options)) == model.backbone.gated
    assert model.config.dropout == 0.0 and model.config.gate_dropout == 0.0  # rows unknown

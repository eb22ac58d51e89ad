"""MixedOptimizer: row-wise Adagrad (the default) or torch's SparseAdam for the lookup tables
(only the rows a batch used move), torch's fused Adam for the rest, one state dict that
resumes bit for bit; and training with lookups through the Trainer resumes exactly."""

import copy
import io

import pytest
import torch
from torch.nn import functional as F

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.config import InputSpec, Lookup
from mmoe.data.table import TensorTable
from mmoe.train import Trainer, fit, load_checkpoint
from mmoe.train.optim import LeanAdam, MixedOptimizer, RowAdagrad, RowAdam, optimizer_for

ROWS, DIM = 50, 4


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    table = torch.nn.Parameter(torch.randn(ROWS, DIM, generator=g))
    weight = torch.nn.Parameter(torch.randn(DIM, 2, generator=g))
    bias = torch.nn.Parameter(torch.randn(2, generator=g))
    return table, [weight, bias]


def _batch(step):
    """(8, 3) ids of rows 1..19 only (rows 20.. never used), some padding."""
    g = torch.Generator().manual_seed(1000 + step)
    ids = torch.randint(1, 20, (8, 3), generator=g)
    ids[ids > 15] = 0
    return ids


def _backward(table, dense, step):
    weight, bias = dense
    pooled = F.embedding_bag(_batch(step), table, mode="mean", padding_idx=0, sparse=True)
    target = torch.randn(8, 2, generator=torch.Generator().manual_seed(step))
    ((pooled @ weight + bias - target) ** 2).sum().backward()


def _train(opt, table, dense, steps, start=0):
    for i in range(start, start + steps):
        opt.zero_grad()
        _backward(table, dense, i)
        opt.step()


@pytest.mark.parametrize("kind", ["adagrad", "adam"])
def test_rows_the_batch_did_not_use_stay_bit_identical(kind):
    table, dense = _params()
    opt = MixedOptimizer(dense, [table], lr=0.05, table_optimizer=kind, table_lr=0.05)
    for step in range(4):
        before = table.detach().clone()
        opt.zero_grad()
        _backward(table, dense, step)
        opt.step()
        used = torch.zeros(ROWS, dtype=torch.bool)
        used[_batch(step).flatten()] = True
        used[0] = False  # padding
        assert torch.equal(table[~used], before[~used]), step
        assert (table[used] != before[used]).any(1).all(), step
    assert torch.equal(table[20:], _params()[0][20:])  # never used: the initial values


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_tables_follow_sparse_adam_and_the_rest_fused_adam_exactly(scale):
    """The tables follow SparseAdam at their rate (s x lr), the rest fused Adam at lr."""
    table, dense = _params()
    opt = MixedOptimizer(dense, [table], lr=0.05, weight_decay=0.01, table_optimizer="adam",
                         table_lr=0.05 * scale)
    ref_table, ref_dense = _params()
    sparse_ref = torch.optim.SparseAdam([ref_table], lr=0.05 * scale)
    dense_ref = torch.optim.Adam(ref_dense, lr=0.05, weight_decay=0.01, fused=True)
    for i in range(6):
        _train(opt, table, dense, 1, start=i)
        for o in (sparse_ref, dense_ref):
            o.zero_grad()
        _backward(ref_table, ref_dense, i)
        sparse_ref.step()
        dense_ref.step()
        assert torch.equal(table, ref_table), i
        for a, b in zip(dense, ref_dense, strict=True):
            assert torch.equal(a, b), i
    # and the tables take no weight decay (SparseAdam has none)
    assert [g["weight_decay"] for g in opt.state_dict()["param_groups"]] == [0.01, 0.0]


def test_first_step_on_every_row_is_adams_step():
    """Lazy Adam differs from Adam only in rows a batch skipped: on a first step that uses
    every row the two agree."""
    table, dense = _params()
    twin = torch.nn.Parameter(table.detach().clone())
    opt = MixedOptimizer(dense, [table], lr=0.05, table_optimizer="adam", table_lr=0.05)
    adam = torch.optim.Adam([twin], lr=0.05)
    ids = torch.arange(1, ROWS).view(7, 7)
    g = torch.randn(7, DIM, generator=torch.Generator().manual_seed(4))
    (F.embedding_bag(ids, table, mode="sum", sparse=True) * g).sum().backward()
    (F.embedding_bag(ids, twin, mode="sum") * g).sum().backward()
    opt.step()
    adam.step()
    assert not torch.equal(table, _params()[0])
    torch.testing.assert_close(table[1:], twin[1:], rtol=1e-6, atol=1e-6)


def _adam(dense, table):
    return MixedOptimizer(dense, [table], lr=0.05, weight_decay=0.01, table_optimizer="adam",
                          table_lr=0.05)


def test_state_dict_resumes_bit_for_bit():
    table, dense = _params()
    opt = _adam(dense, table)
    _train(opt, table, dense, 3)
    state = opt.state_dict()
    # torch's Adam layout: the dense group, then the tables' group marked sparse
    groups = state["param_groups"]
    assert [g["params"] for g in groups] == [[0, 1], [2]]
    assert groups[1]["sparse"] is True and groups[1]["weight_decay"] == 0.0
    assert set(state["state"]) == {0, 1, 2}
    for st in state["state"].values():
        assert set(st) == {"step", "exp_avg", "exp_avg_sq"}
        assert st["step"].dtype.is_floating_point and float(st["step"]) == 3.0
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)

    # a fresh optimizer on copies of the weights, from the saved state
    table2 = torch.nn.Parameter(table.detach().clone())
    dense2 = [torch.nn.Parameter(p.detach().clone()) for p in dense]
    opt2 = _adam(dense2, table2)
    opt2.load_state_dict(loaded)
    _train(opt, table, dense, 4, start=3)
    _train(opt2, table2, dense2, 4, start=3)
    assert torch.equal(table, table2)
    for a, b in zip(dense, dense2, strict=True):
        assert torch.equal(a, b)
    again = opt2.state_dict()
    for k, st in opt.state_dict()["state"].items():
        for name, value in st.items():
            assert torch.equal(again["state"][k][name], value), (k, name)


def test_continuing_without_the_state_differs():
    """The resume test above can fail: a fresh optimizer (no moments) takes other steps."""
    table, dense = _params()
    opt = _adam(dense, table)
    _train(opt, table, dense, 3)
    table2 = torch.nn.Parameter(table.detach().clone())
    dense2 = [torch.nn.Parameter(p.detach().clone()) for p in dense]
    opt2 = _adam(dense2, table2)
    _train(opt, table, dense, 2, start=3)
    _train(opt2, table2, dense2, 2, start=3)
    assert not torch.equal(table, table2)


def _rowwise_adagrad_reference(table, grads, lr, rows, init):
    """Row-wise Adagrad on dense gradients, every row (a row without gradient keeps its
    accumulator and its value): the reference the sparse one must match."""
    acc = torch.full((table.shape[0],), init, dtype=torch.float64)
    w = table.detach().double().clone()
    for g in grads:
        g = g.double() * rows
        used = (g != 0).any(1)
        acc[used] += g[used].pow(2).mean(1)
        w[used] -= lr * g[used] / acc[used].sqrt()[:, None]
    return w


def test_adagrad_tables_match_a_dense_rowwise_adagrad():
    """RowAdagrad against a float64 dense reference: a_r += mean_d G_r^2, w_r -= lr G_r /
    sqrt(a_r), with G_r = rows x the gradient; the rows the batches skipped stay."""
    table, dense = _params()
    start = table.detach().clone()
    opt = MixedOptimizer(dense, [table], lr=0.05, table_lr=0.7)
    opt.sparse.param_groups[0]["rows"] = 8
    grads = []
    for step in range(5):
        opt.zero_grad()
        _backward(table, dense, step)
        grads.append(table.grad.to_dense().clone())
        opt.step()
    expected = _rowwise_adagrad_reference(start, grads, 0.7, 8, 10.0)
    torch.testing.assert_close(table.detach().double(), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(table[20:], start[20:])
    state = opt.state_dict()
    assert set(state["state"][2]) == {"sum"} and state["state"][2]["sum"].shape == (ROWS,)
    assert float(state["state"][2]["sum"][25]) == 10.0  # never used: the starting value
    groups = state["param_groups"]
    assert [g["params"] for g in groups] == [[0, 1], [2]]
    assert groups[1]["sparse"] is True and groups[1]["weight_decay"] == 0.0


def test_adagrad_first_step_is_sgd_and_a_large_gradient_is_bounded():
    """A small gradient's first step is SGD's at lr / sqrt(10); a huge one's is at most lr."""
    table = torch.nn.Parameter(torch.zeros(4, 2))
    opt = RowAdagrad([table], lr=3.0)
    table.grad = torch.sparse_coo_tensor([[1, 2]], torch.tensor([[1e-3, -1e-3], [1e6, 1e6]]),
                                         (4, 2), check_invariants=True)
    opt.step()
    torch.testing.assert_close(table[1], torch.tensor([-3e-3, 3e-3]) / 10**0.5)
    assert (table[2].abs() <= 3.0).all() and (table[2].abs() > 2.99).all()


def test_adagrad_state_dict_resumes_bit_for_bit():
    table, dense = _params()
    opt = MixedOptimizer(dense, [table], lr=0.05, weight_decay=0.01, table_lr=0.3)
    _train(opt, table, dense, 3)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    table2 = torch.nn.Parameter(table.detach().clone())
    dense2 = [torch.nn.Parameter(p.detach().clone()) for p in dense]
    opt2 = MixedOptimizer(dense2, [table2], lr=0.05, weight_decay=0.01, table_lr=0.3)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    assert opt2.param_groups[-1]["lr"] == 0.3
    _train(opt, table, dense, 4, start=3)
    _train(opt2, table2, dense2, 4, start=3)
    assert torch.equal(table, table2)
    for a, b in zip(dense, dense2, strict=True):
        assert torch.equal(a, b)
    fresh = MixedOptimizer(dense2, [table2], lr=0.05, weight_decay=0.01, table_lr=0.3)
    _train(fresh, table2, dense2, 2, start=7)  # without the accumulators: other steps
    _train(opt, table, dense, 2, start=7)
    assert not torch.equal(table, table2)


def test_the_rates_of_the_tables():
    """Adagrad: table_lr, its gradients summed over batch_size rows; Adam: table_lr_scale x
    lr; both times the schedule's factor."""
    table, dense = _params()
    cfg = TrainConfig(lr=0.01, batch_size=64, table_lr=0.5, table_lr_scale=4.0)
    opt = MixedOptimizer(dense, [table])
    opt.schedule(cfg, 0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.005, 0.25]
    assert opt.param_groups[-1]["rows"] == 64
    adam = MixedOptimizer(dense, [table], table_optimizer="adam")
    adam.schedule(cfg, 0.5)
    assert [g["lr"] for g in adam.param_groups] == [0.005, pytest.approx(0.02)]
    with pytest.raises(ValueError, match="table_optimizer must be one of adagrad, adam"):
        TrainConfig(table_optimizer="sgd")


# ---- through the model and the Trainer ---------------------------------------------------------
TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "regression"))
LOOKUPS = (Lookup("user_id", "user_id", rows=31, dim=4),
           Lookup("item_id", "item_id", rows=21, dim=3),
           Lookup("history", "item_id", rows=21, dim=3, slots=3))


def _model(seed=0):
    torch.manual_seed(seed)
    inputs = InputSpec(numeric=("x0", "x1"), lookups=LOOKUPS)
    return build_model("mmoe", inputs, TASKS, num_experts=2, expert_units=(6,),
                       tower_units=(3,))


def _data(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    user = torch.randint(0, 31, (n, 1), generator=g)
    item = torch.randint(1, 21, (n, 1), generator=g)
    history = torch.randint(0, 21, (n, 3), generator=g)
    a = ((x[:, 0] + (item[:, 0] % 3 == 0).float()) > 0.5).float()
    b = x[:, 1] + 0.1 * user[:, 0].float()
    return TensorTable(numeric=x, labels=torch.stack([a, b], 1),
                       ids=torch.cat([user, item, history], 1))


def _weights_equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))


def test_optimizer_for_a_model_with_tables():
    model = _model()
    cfg = TrainConfig(lr=0.01, weight_decay=0.001)
    opt = optimizer_for(model, torch.nn.Module(), cfg)
    assert isinstance(opt, MixedOptimizer) and isinstance(opt.dense, LeanAdam)
    assert isinstance(opt.sparse, RowAdagrad)  # the default for the tables
    assert [id(p) for p in opt.sparse.param_groups[0]["params"]] == [
        id(p) for p in model.sparse_parameters()]
    dense = {id(p) for g in opt.dense.param_groups for p in g["params"]}
    tables = {id(p) for p in model.sparse_parameters()}
    assert dense | tables == {id(p) for p in model.parameters()} and not dense & tables
    assert opt.param_groups[0]["weight_decay"] == 0.001


@pytest.mark.parametrize("kind", ["adagrad", "adam"])
def test_the_trainer_schedules_the_tables_at_their_rate(kind):
    cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-2, warmup=0.2, table_optimizer=kind,
                      table_lr=0.5, table_lr_scale=4.0)
    ratio = 0.5 / 1e-2 if kind == "adagrad" else 4.0  # the tables' rate / lr
    trainer = Trainer(_model(), cfg)
    seen = []
    original_step = trainer.optimizer.step

    def step(*args, **kwargs):
        seen.append([g["lr"] for g in trainer.optimizer.param_groups])
        original_step(*args, **kwargs)

    trainer.optimizer.step = step
    trainer.fit(_data())
    assert len(seen) == 10
    for dense, table in ((g[0], g[-1]) for g in seen):
        assert table == pytest.approx(ratio * dense, abs=1e-12) and 0 <= dense <= 1e-2
    assert seen[1][0] == pytest.approx(1e-2)  # warm-up over 2 of 10 steps: at the peak
    assert seen[-1][0] == 0.0 and seen[4][-1] > 1e-2  # cosine to zero; tables above lr
    assert [len(g) for g in seen] == [len(seen[0])] * 10


@pytest.mark.parametrize("kind", ["adagrad", "adam"])
def test_trainer_with_lookups_resumes_a_mid_epoch_checkpoint_exactly(tmp_path, kind):
    train = _data()
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-2, seed=3, restore_best=False,
                      checkpoint_every=4, table_optimizer=kind, table_lr=0.05)
    straight = _model()
    fit(straight, train, None, cfg)
    assert not _weights_equal(straight, _model())  # training moved the weights

    crashed = _model()
    trainer = Trainer(crashed, cfg, checkpoint=tmp_path / "ck.pt")
    assert isinstance(trainer.optimizer, MixedOptimizer)
    original_step = trainer.optimizer.step
    calls = {"n": 0}

    def step_then_die(*args, **kwargs):
        original_step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 14:  # mid epoch 2 (10 steps an epoch)
            raise KeyboardInterrupt

    trainer.optimizer.step = step_then_die
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(train)
    assert load_checkpoint(tmp_path / "ck.pt")["trainer"]["global_step"] == 12
    resumed = _model(seed=7)  # other initial weights: they must come from the checkpoint
    Trainer(resumed, cfg, checkpoint=tmp_path / "ck.pt").fit(train, resume=True)
    assert _weights_equal(resumed, straight)


def test_trainer_resume_needs_the_tables_moments(tmp_path):
    """Resuming with the tables' Adam moments zeroed lands elsewhere: the state is used."""
    train = _data()
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-2, seed=3, restore_best=False,
                      lr_schedule="constant",  # resumed with more epochs: no planned schedule
                      table_optimizer="adam")
    straight = _model()
    fit(straight, train, None, cfg)
    first = _model()
    Trainer(first, TrainConfig(**{**cfg.to_dict(), "epochs": 1}),
            checkpoint=tmp_path / "ck.pt").fit(train)
    raw = torch.load(tmp_path / "ck.pt", weights_only=True)
    raw["trainer"] = raw["trainer"].replace('"epochs": 1', '"epochs": 2')
    torch.save(raw, tmp_path / "ck.pt")
    resumed = _model(seed=7)
    Trainer(resumed, cfg, checkpoint=tmp_path / "ck.pt").fit(train, resume=True)
    assert _weights_equal(resumed, straight)

    damaged = copy.deepcopy(raw)
    groups = damaged["optimizer"]["param_groups"]
    for i in groups[-1]["params"]:  # the tables' moments
        for name in ("exp_avg", "exp_avg_sq"):
            damaged["optimizer"]["state"][i][name].zero_()
    torch.save(damaged, tmp_path / "ck.pt")
    other = _model(seed=7)
    Trainer(other, cfg, checkpoint=tmp_path / "ck.pt").fit(train, resume=True)
    assert not _weights_equal(other, straight)


def test_resume_refuses_another_table_optimizer(tmp_path):
    """A checkpoint's tables trained by Adagrad do not resume under Adam (nor the reverse): the
    settings differ, and nothing is loaded."""
    train = _data()
    cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-2, restore_best=False)
    Trainer(_model(), cfg, checkpoint=tmp_path / "ck.pt").fit(train)
    model = _model(seed=7)
    before = copy.deepcopy(model.state_dict())
    adam = TrainConfig(**{**cfg.to_dict(), "table_optimizer": "adam"})
    with pytest.raises(ValueError, match="different training settings"):
        Trainer(model, adam, checkpoint=tmp_path / "ck.pt").fit(train, resume=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("kind", [RowAdagrad, RowAdam])
def test_table_optimizers_take_sparse_gradients_only(kind):
    table = torch.nn.Parameter(torch.zeros(4, 2))
    opt = kind([table], lr=0.1)
    table.grad = torch.ones(4, 2)
    with pytest.raises(RuntimeError, match=f"{kind.__name__} takes sparse gradients only"):
        opt.step()
    assert torch.equal(table, torch.zeros(4, 2))


def test_training_memory_check_counts_the_tables_optimizer_state(monkeypatch):
    """Training checks what it adds: for the lookup tables Adam's two moments (2 copies) or
    Adagrad's float per row (1 / width), their gradients being sparse: a 2M x 16 table
    (128 MB) trains by Adagrad in 200 MB of free memory, by Adam it is refused."""
    from mmoe.models import model as model_module

    inputs = InputSpec(numeric=("x0",), lookups=(Lookup("user_id", "user_id", 2_000_000, 16),))
    torch.manual_seed(0)
    model = build_model("mmoe", inputs, TASKS, num_experts=2, expert_units=(4,),
                        tower_units=(2,))
    monkeypatch.setattr(model_module, "available_memory", lambda: 200 << 20)
    Trainer(model, TrainConfig(epochs=1), device="cpu")  # Adagrad: about 8 MB more
    with pytest.raises(ValueError, match="training model 'mmoe' is too large for this machine"):
        Trainer(model, TrainConfig(epochs=1, table_optimizer="adam"), device="cpu")


def test_the_configs_table_optimizers_are_the_ones_the_trainer_builds():
    """TrainConfig accepts exactly the table optimizers MixedOptimizer can build."""
    from mmoe.config import training
    from mmoe.train import optim

    assert set(training.TABLE_OPTIMIZERS) == set(optim.TABLE_OPTIMIZERS)
    with pytest.raises(ValueError, match="one of adagrad, adam"):
        optim.MixedOptimizer([torch.nn.Parameter(torch.zeros(2))],
                             [torch.nn.Parameter(torch.zeros(2, 2))],
                             table_optimizer="sgd")

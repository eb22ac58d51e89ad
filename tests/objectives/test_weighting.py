"""Loss weighting: closed forms, equivalences and the Trainer integration."""

import math

import pytest
import torch

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.data.table import TensorTable
from mmoe.objectives import MultiTaskLoss
from mmoe.objectives.weighting import (
    GradNorm,
    PCGrad,
    StaticWeighting,
    UncertaintyWeighting,
    make_weighting,
    pcgrad_project,
)
from mmoe.train import Trainer

TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "regression", weight=2.0))


def _model(name="mmoe", seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(name, 5, TASKS, num_experts=3, expert_units=(4,), tower_units=(3,), **kw)


def _table(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = torch.stack([(x[:, 0] > 0).float(), x[:, 1] + 0.1 * torch.randn(n, generator=g)], 1)
    return TensorTable(numeric=x, labels=y)


def _task_losses(model, table):
    loss = MultiTaskLoss(model.tasks, model.task_slices)
    return loss(model(*table.inputs()), table.labels)


def _grads(model):
    return [p.grad.clone() for p in model.parameters()]


def test_static_weighting_is_the_task_weighted_sum():
    w = StaticWeighting(TASKS)
    assert float(w.loss(torch.tensor([1.5, 0.25]))) == pytest.approx(1.5 + 2 * 0.25)


def test_uncertainty_with_fixed_log_variances_equals_static_weights():
    s = torch.tensor([0.7, -0.4])
    unc = UncertaintyWeighting(TASKS)
    with torch.no_grad():
        unc.log_var.copy_(s)
    unc.log_var.requires_grad_(False)
    # binary: exp(-s) L; regression: 0.5 exp(-s) L; both times lambda_t (Kendall et al. 2018)
    lam = torch.tensor([1.0 * math.exp(-0.7), 2.0 * 0.5 * math.exp(0.4)])
    static = StaticWeighting([TaskSpec("a", "binary", weight=float(lam[0])),
                              TaskSpec("b", "regression", weight=float(lam[1]))])
    table = _table()
    m1, m2 = _model(), _model()
    unc.backward(_task_losses(m1, table))
    static.backward(_task_losses(m2, table))
    for g1, g2 in zip(_grads(m1), _grads(m2), strict=True):
        torch.testing.assert_close(g1, g2)
    # the loss differs from the static one by the constant sum_t lambda_t s_t / 2
    losses = torch.tensor([0.3, 0.8])
    diff = float(unc.loss(losses) - static.loss(losses))
    assert diff == pytest.approx(0.5 * (0.7 - 2 * 0.4), abs=1e-6)


def test_uncertainty_log_variance_moves_towards_the_loss_optimum():
    # d/ds (exp(-s) L + s/2) = 0 at s = log(2L) for a binary task
    unc = UncertaintyWeighting([TaskSpec("a", "binary")])
    opt = torch.optim.SGD(unc.parameters(), lr=0.1)
    for _ in range(500):
        opt.zero_grad()
        unc.loss(torch.tensor([0.2])).backward()
        opt.step()
    assert float(unc.log_var.detach()[0]) == pytest.approx(math.log(0.4), abs=1e-3)


def test_pcgrad_projection_of_two_conflicting_gradients_matches_the_hand_projection():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    out = pcgrad_project(torch.stack([g1, g2]))
    # g1 - (g1.g2)/|g2|^2 g2 = (1, 0) + 0.5 (-1, 1); g2 - (g2.g1)/|g1|^2 g1 = (-1, 1) + (1, 0)
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    # the projected g1 no longer conflicts with g2 (and vice versa)
    assert float(out[0] @ g2) == pytest.approx(0.0)
    assert float(out[1] @ g1) == pytest.approx(0.0)


def test_pcgrad_leaves_agreeing_gradients_alone():
    grads = torch.tensor([[1.0, 2.0], [0.5, 0.1], [0.0, 3.0]])
    torch.testing.assert_close(pcgrad_project(grads), grads)


def test_pcgrad_backward_puts_projected_sum_on_shared_and_plain_sum_on_towers():
    table = _table()
    model = _model()
    pc = make_weighting(TrainConfig(loss_weighting="pcgrad"), model)
    assert isinstance(pc, PCGrad)
    shared = model.shared_parameters()
    losses = _task_losses(model, table)
    lam = torch.tensor([1.0, 2.0])
    per_task = [torch.autograd.grad(lam[t] * losses[t], shared, retain_graph=True)
                for t in range(2)]
    flat = torch.stack([torch.cat([g.reshape(-1) for g in gs]) for gs in per_task])
    expected = pcgrad_project(flat).sum(0)
    tower = [p for p in model.towers.parameters()]
    tower_expected = torch.autograd.grad((lam * losses).sum(), tower, retain_graph=True)
    pc.backward(losses)
    got = torch.cat([p.grad.reshape(-1) for p in shared])
    torch.testing.assert_close(got, expected)
    for p, g in zip(tower, tower_expected, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_gradnorm_weights_renormalise_to_the_number_of_tasks():
    table = _table()
    model = _model()
    gn = make_weighting(TrainConfig(loss_weighting="gradnorm"), model)
    assert isinstance(gn, GradNorm)
    assert gn.shared == [model.backbone.experts.layers[-1].weight]
    torch.testing.assert_close(gn.task_weight.detach().sum(), torch.tensor(2.0))  # T
    opt = torch.optim.Adam([*model.parameters(), *gn.parameters()], lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        gn.backward(_task_losses(model, table))
        assert gn.task_weight.grad is not None and gn.task_weight.grad.abs().sum() > 0
        opt.step()
        gn.after_step()
        torch.testing.assert_close(gn.task_weight.detach().sum(), torch.tensor(2.0))
    assert not torch.allclose(gn.task_weight.detach(), torch.tensor([2 / 3, 4 / 3]))
    assert (gn.initial > 0).all()


def test_gradnorm_weight_gradient_is_the_sign_rule():
    # one-parameter model: L_t = c_t * theta^2, W = theta, so ||grad_W L_t|| = |2 c_t theta|
    theta = torch.nn.Parameter(torch.tensor(1.0))
    gn = GradNorm([TaskSpec("a", "regression"), TaskSpec("b", "regression")], [theta], alpha=0)
    c = torch.tensor([1.0, 3.0])
    gn.backward(c * theta.square())
    norms = 2 * c  # w = 1: G = (2, 6), target = mean(G) = 4 with alpha = 0
    torch.testing.assert_close(gn.task_weight.grad, torch.sign(norms - 4) * norms)


def test_last_shared_layer_of_the_known_backbones():
    sb = _model("shared_bottom")
    assert sb.last_shared_layer() == [sb.backbone.bottom.layers[-1].weight]
    ple = _model("ple")
    assert ple.last_shared_layer() == [ple.backbone.levels[-1].experts.layers[-1].weight]
    mixed = _model("mixed_mmoe")
    assert len(mixed.last_shared_layer()) == 3  # one output layer per expert group


@pytest.mark.parametrize("kind", ["static", "uncertainty", "gradnorm", "pcgrad"])
def test_trainer_resume_mid_epoch_is_exact_with_each_weighting(kind, tmp_path):
    train = _table(96)
    cfg = TrainConfig(epochs=2, batch_size=16, seed=3, checkpoint_every=4, loss_weighting=kind)
    straight = _model()
    trainer = Trainer(straight, cfg, progress=False)
    trainer.fit(train)
    crashed = _model()
    crash = Trainer(crashed, cfg, checkpoint=tmp_path / "ck.pt", progress=False)
    original_step, calls = crash.optimizer.step, {"n": 0}

    def step_then_die(*args, **kwargs):
        original_step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 9:  # mid epoch 2; the last checkpoint is at step 8
            raise KeyboardInterrupt

    crash.optimizer.step = step_then_die
    with pytest.raises(KeyboardInterrupt):
        crash.fit(train)
    resumed = _model(seed=7)
    again = Trainer(resumed, cfg, checkpoint=tmp_path / "ck.pt", progress=False)
    again.fit(train, resume=True)
    for a, b in zip(resumed.state_dict().values(), straight.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(again.weighting.state_dict().values(),
                    trainer.weighting.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    if kind in ("uncertainty", "gradnorm"):  # learnt weights are logged per epoch
        assert set(trainer.state["history"][-1]["loss_weights"]) == {"a", "b"}
        assert len(trainer.weighting.state_dict()) > 0


def test_unknown_weighting_is_a_clear_error():
    with pytest.raises(ValueError, match="loss_weighting must be one of static, uncertainty"):
        TrainConfig(loss_weighting="magic")

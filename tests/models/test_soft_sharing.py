"""L2-Constrained, Cross-Stitch and Tensor-Factorization: closed forms and equivalences with
Single-Task."""

from __future__ import annotations

import pytest
import torch

from mmoe.config import TaskSpec
from mmoe.models import build_model
from mmoe.models.soft_sharing import stitch_init
from mmoe.models.tensor_factorization import TuckerLinear

TASKS2 = (TaskSpec("a", "binary"), TaskSpec("b", "regression"))
TASKS3 = (*TASKS2, TaskSpec("c", "multiclass", classes=("x", "y", "z")))


def _build(name, d, tasks, seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(name, d, tasks, **kw).eval()


def _copy_single_task_layers(single, layers):
    """Copy Single-Task's stacked layer weights into another backbone's layer list."""
    with torch.no_grad():
        for src, dst in zip(single.backbone.nets.layers, layers, strict=True):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)


# --- L2-Constrained -----------------------------------------------------------------------

def test_l2_alpha_zero_equals_single_task_with_same_weights():
    single = _build("single_task", 7, TASKS3, seed=1, expert_units=(5, 4))
    l2 = _build("l2_constrained", 7, TASKS3, seed=2, expert_units=(5, 4),
                options={"alpha": 0.0})
    l2.load_state_dict(single.state_dict())  # same layout: backbone.nets, towers
    x = torch.randn(6, 7)
    torch.testing.assert_close(l2(x), single(x), rtol=0, atol=0)
    assert l2.backbone.penalty().item() == 0.0


def test_l2_penalty_two_tasks_is_alpha_times_squared_distance():
    model = _build("l2_constrained", 4, TASKS2, expert_units=(3, 2), options={"alpha": 0.25})
    expected = 0.0
    for layer in model.backbone.nets.layers:
        w, b = layer.weight.detach(), layer.bias.detach()
        expected += sum(float((w[0, i, o] - w[1, i, o]) ** 2)
                        for i in range(w.shape[1]) for o in range(w.shape[2]))
        expected += sum(float((b[0, o] - b[1, o]) ** 2) for o in range(b.shape[1]))
    assert model.backbone.penalty().item() == pytest.approx(0.25 * expected, rel=1e-5)


def test_l2_penalty_three_tasks_sums_all_pairs_and_has_the_right_gradient():
    model = _build("l2_constrained", 3, TASKS3, expert_units=(2,), options={"alpha": 0.5})
    params = list(model.backbone.nets.parameters())
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = 0.5 * sum(float(((p[s] - p[t]).detach() ** 2).sum())
                         for p in params for s, t in pairs)
    pen = model.backbone.penalty()
    assert pen.item() == pytest.approx(expected, rel=1e-5)
    pen.backward()
    # d/dθ_t of alpha * sum_{s<t} ||θ_s - θ_t||² = 2 alpha sum_s (θ_t - θ_s)
    w = params[0].detach()
    grad = 2 * 0.5 * torch.stack([sum(w[t] - w[s] for s in range(3)) for t in range(3)])
    torch.testing.assert_close(params[0].grad, grad)


def test_l2_identical_task_networks_have_zero_penalty_and_one_task_too():
    model = _build("l2_constrained", 3, TASKS2, options={"alpha": 10.0})
    with torch.no_grad():
        for p in model.backbone.nets.parameters():
            p[1].copy_(p[0])
    assert model.backbone.penalty().item() == 0.0
    one = _build("l2_constrained", 3, TASKS2[:1], options={"alpha": 10.0})
    assert one.backbone.penalty().item() == 0.0


def test_l2_default_alpha_is_documented_value():
    assert _build("l2_constrained", 3, TASKS2).backbone.alpha == 1e-3


# --- Cross-Stitch -------------------------------------------------------------------------

def test_stitch_init_rows_are_convex_combinations():
    a = stitch_init(3, 0.9)
    torch.testing.assert_close(a, torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05],
                                                [0.05, 0.05, 0.9]]))
    torch.testing.assert_close(stitch_init(1, 0.9), torch.ones(1, 1))
    model = _build("cross_stitch", 4, TASKS2, expert_units=(3, 3))
    assert len(model.backbone.stitch) == 2
    torch.testing.assert_close(model.backbone.stitch[1].detach(),
                               torch.tensor([[0.9, 0.1], [0.1, 0.9]]))


def test_cross_stitch_with_identity_mixing_equals_single_task():
    single = _build("single_task", 6, TASKS3, seed=1, expert_units=(5, 4))
    cross = _build("cross_stitch", 6, TASKS3, seed=2, expert_units=(5, 4))
    _copy_single_task_layers(single, cross.backbone.layers)
    cross.towers.load_state_dict(single.towers.state_dict())
    with torch.no_grad():
        for a in cross.backbone.stitch:
            a.copy_(torch.eye(3))
    x = torch.randn(5, 6)
    torch.testing.assert_close(cross(x), single(x))
    # the default (non-identity) mixing does change the output
    cross2 = _build("cross_stitch", 6, TASKS3, seed=2, expert_units=(5, 4))
    _copy_single_task_layers(single, cross2.backbone.layers)
    cross2.towers.load_state_dict(single.towers.state_dict())
    assert not torch.allclose(cross2(x), single(x))


def test_cross_stitch_two_task_mixing_by_hand():
    model = _build("cross_stitch", 3, TASKS2, expert_units=(2,))
    bb = model.backbone
    with torch.no_grad():
        bb.layers[0].weight.copy_(torch.tensor([[[1., 0.], [0., 1.], [0., 0.]],     # task 0
                                                [[0., 0.], [0., 0.], [1., -1.]]]))  # task 1
        bb.layers[0].bias.copy_(torch.tensor([[0., 3.], [0.5, 0.5]]))
        bb.stitch[0].copy_(torch.tensor([[0.9, 0.1], [0.3, 0.7]]))
    h, gates, _ = bb(torch.tensor([[1., -2., 3.]]))
    # x_0 = relu([1, -2 + 3]) = [1, 1]; x_1 = relu([3.5, -2.5]) = [3.5, 0]
    # x~_0 = 0.9 x_0 + 0.1 x_1 = [1.25, 0.9]; x~_1 = 0.3 x_0 + 0.7 x_1 = [2.75, 0.3]
    torch.testing.assert_close(h, torch.tensor([[[1.25, 0.9]], [[2.75, 0.3]]]))
    assert gates is None


def test_cross_stitch_mixing_gets_gradient_off_the_diagonal():
    model = _build("cross_stitch", 4, TASKS2, expert_units=(3, 3))
    model.train()
    model(torch.randn(8, 4))[:, 0].sum().backward()  # only task 0's loss
    for a in model.backbone.stitch:
        assert a.grad[0].abs().sum() > 0  # row 0 mixes into task 0
    # task 1's first-layer network reaches task 0 only through the mixing
    assert model.backbone.layers[0].weight.grad[1].abs().sum() > 0


# --- Tensor-Factorization -----------------------------------------------------------------

def test_tucker_weights_equal_hand_sum():
    torch.manual_seed(3)
    layer = TuckerLinear(3, 4, 5, (2, 3, 2))
    with torch.no_grad():
        for p in (layer.core, layer.u1, layer.u2, layer.u3):
            p.normal_()
    s, u1, u2, u3 = (p.detach() for p in (layer.core, layer.u1, layer.u2, layer.u3))
    expected = torch.zeros(3, 4, 5)
    for t in range(3):
        for i in range(4):
            for o in range(5):
                expected[t, i, o] = sum(s[a, b, c] * u1[i, a] * u2[o, b] * u3[t, c]
                                        for a in range(2) for b in range(3) for c in range(2))
    torch.testing.assert_close(layer.weight(), expected)
    x = torch.randn(6, 4)
    torch.testing.assert_close(layer(x), torch.stack([x @ expected[t] for t in range(3)])
                               + layer.bias.detach()[:, None])
    xt = torch.randn(3, 6, 4)
    torch.testing.assert_close(layer(xt), torch.stack([xt[t] @ expected[t] for t in range(3)])
                               + layer.bias.detach()[:, None])


def test_tensor_factorization_identity_factors_equal_single_task():
    single = _build("single_task", 6, TASKS3, seed=1, expert_units=(5, 4))
    tf = _build("tensor_factorization", 6, TASKS3, seed=2, expert_units=(5, 4),
                options={"ranks": (100, 100, 100)})  # capped at full ranks
    with torch.no_grad():
        for src, dst in zip(single.backbone.nets.layers, tf.backbone.layers, strict=True):
            t, i, o = src.weight.shape
            assert dst.core.shape == (i, o, t)
            dst.u1.copy_(torch.eye(i))
            dst.u2.copy_(torch.eye(o))
            dst.u3.copy_(torch.eye(t))
            dst.core.copy_(src.weight.permute(1, 2, 0))  # S = stacked weights (I, O, T)
            dst.bias.copy_(src.bias)
    tf.towers.load_state_dict(single.towers.state_dict())
    x = torch.randn(5, 6)
    torch.testing.assert_close(tf(x), single(x))


def test_tensor_factorization_full_rank_init_equals_single_task_under_same_seed():
    single = _build("single_task", 6, TASKS2, seed=4, expert_units=(5, 4))
    tf = _build("tensor_factorization", 6, TASKS2, seed=4, expert_units=(5, 4),
                options={"ranks": (6, 5, 2)})
    for src, dst in zip(single.backbone.nets.layers, tf.backbone.layers, strict=True):
        torch.testing.assert_close(dst.weight(), src.weight, atol=1e-5, rtol=1e-4)
    x = torch.randn(5, 6)
    torch.testing.assert_close(tf(x), single(x), atol=1e-5, rtol=1e-4)


def test_tensor_factorization_low_task_rank_ties_the_tasks():
    tf = _build("tensor_factorization", 6, TASKS3, expert_units=(5,), options={"ranks": (2, 3, 1)})
    layer = tf.backbone.layers[0]
    assert layer.core.shape == (2, 3, 1)
    w = layer.weight().detach()  # (T, I, O)
    assert torch.linalg.matrix_rank(w.reshape(3, -1)) == 1  # W_t = U3[t] * shared matrix
    assert torch.linalg.matrix_rank(w[0]) <= 2  # rank <= min(r1, r2)


def test_tensor_factorization_default_ranks_are_capped():
    tf = _build("tensor_factorization", 3, TASKS2[:1], expert_units=(16, 4))
    assert [tuple(l.core.shape) for l in tf.backbone.layers] == [(3, 8, 1), (8, 4, 1)]


# --- all three: defaults work on any d and T, gradients reach every parameter -------------

@pytest.mark.parametrize("name", ["l2_constrained", "cross_stitch", "tensor_factorization"])
@pytest.mark.parametrize("tasks", [TASKS2[:1], TASKS3])
def test_defaults_batch_of_one_and_gradients(name, tasks):
    model = _build(name, 5, tasks)
    model.train()
    y, _, aux = model(torch.randn(1, 5), parts=True)
    assert y.shape == (1, sum(t.out_dim for t in tasks))
    (y.sum() + aux if aux is not None else y.sum()).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None]
    assert not dead


# --- option errors ------------------------------------------------------------------------

@pytest.mark.parametrize("name, options, match", [
    ("l2_constrained", {"alpha": -1.0}, "l2_constrained.*'alpha'"),
    ("l2_constrained", {"alpha": True}, "l2_constrained.*'alpha'"),
    ("l2_constrained", {"lambda": 1.0}, "l2_constrained.*unknown option.*'lambda'"),
    ("cross_stitch", {"self_weight": 1.5}, "cross_stitch.*'self_weight'"),
    ("cross_stitch", {"alpha": 0.1}, "cross_stitch.*unknown option.*'alpha'"),
    ("tensor_factorization", {"ranks": (8, 8)}, "tensor_factorization.*'ranks'"),
    ("tensor_factorization", {"ranks": (8, 0, 2)}, "tensor_factorization.*'ranks'"),
    ("tensor_factorization", {"ranks": "8,8,2"}, "tensor_factorization.*'ranks'"),
    ("tensor_factorization", {"ranks": (8, 2.5, 2)}, "tensor_factorization.*'ranks'"),
    ("tensor_factorization", {"rank": 4}, "tensor_factorization.*unknown option.*'rank'"),
])
def test_bad_options_raise_naming_model_and_option(name, options, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, 4, TASKS2, options=options)


def test_ranks_from_json_lists_are_accepted():
    tf = _build("tensor_factorization", 4, TASKS2, options={"ranks": [2, 2, 1]})
    assert tf.backbone.layers[0].core.shape == (2, 2, 1)

import math

import pytest
import torch
from torch import nn

from mmoe.nn import FeatureEncoder, Gates, StackedLinear, StackedMLP, Towers, mix_experts


def test_stacked_linear_init_and_forward_equal_a_loop_of_nn_linear():
    torch.manual_seed(3)
    loop = [nn.Linear(5, 4) for _ in range(3)]
    torch.manual_seed(3)
    stacked = StackedLinear(3, 5, 4)
    for g, lin in enumerate(loop):  # same RNG draws, same order: identical initial weights
        assert torch.equal(stacked.weight[g], lin.weight.T)
        assert torch.equal(stacked.bias[g], lin.bias)
    x = torch.randn(7, 5)
    expected = torch.stack([lin(x) for lin in loop])
    torch.testing.assert_close(stacked(x), expected)  # shared input (B, I)
    xg = torch.randn(3, 7, 5)
    torch.testing.assert_close(stacked(xg), torch.stack([lin(xg[g]) for g, lin in enumerate(loop)]))


def test_stacked_linear_init_bounds_match_nn_linear():
    layer = StackedLinear(64, 16, 32)
    bound = 1 / math.sqrt(16)
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    assert layer.weight.abs().max() > 0.9 * bound  # uniform over the whole range, not tiny


def test_stacked_mlp_equals_loop_of_relu_mlps():
    torch.manual_seed(0)
    mlp = StackedMLP(4, 6, (5, 3))
    x = torch.randn(9, 6)
    for e in range(4):
        h = x
        for layer in mlp.layers:
            h = torch.relu(h @ layer.weight[e] + layer.bias[e])
        torch.testing.assert_close(mlp(x)[e], h)


def _with_norm_reference(mlp: StackedMLP, x: torch.Tensor, g: int, train: bool):
    """Group g of a batch-normalised StackedMLP as nn.Linear -> nn.BatchNorm1d -> ReLU layers
    holding that group's slices (and running statistics)."""
    h = x
    for layer, norm in zip(mlp.layers, mlp.norms, strict=True):
        o = layer.out_features
        bn = nn.BatchNorm1d(o)
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, name).copy_(getattr(norm, name)[g * o:(g + 1) * o])
        bn.train(train)
        h = torch.relu(bn(h @ layer.weight[g] + layer.bias[g]))
    return h


@pytest.mark.parametrize("train", [True, False])
def test_stacked_mlp_batch_norm_equals_linear_bn_relu_per_group(train):
    torch.manual_seed(0)
    mlp = StackedMLP(3, 6, (5, 4))
    mlp.add_batch_norm()
    with torch.no_grad():  # non-trivial affine and running statistics
        for norm in mlp.norms:
            for name in ("weight", "bias", "running_mean"):
                getattr(norm, name).uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
    mlp.train(train)
    x = torch.randn(11, 6, requires_grad=True)
    out = mlp(x)  # (3, 11, 4)
    for g in range(3):
        ref = _with_norm_reference(mlp, x, g, train)
        torch.testing.assert_close(out[g], ref)
        if train:  # in training, each row's output depends on the whole batch
            (ga,) = torch.autograd.grad(out[g].sum(), x, retain_graph=True)
            (gb,) = torch.autograd.grad(ref.sum(), x, retain_graph=True)
            torch.testing.assert_close(ga, gb)
    assert not mlp.only_relu_after_first  # a one-layer normalised MLP must not be fused
    one = StackedMLP(2, 6, (4,))
    assert one.only_relu_after_first
    one.add_batch_norm()
    assert not one.only_relu_after_first


def test_gate_mixture_closed_form():
    gates = Gates(2, num_experts=2, num_gates=1)
    with torch.no_grad():
        gates.linear.weight.copy_(torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]))  # logits = (x0, 0)
    x = torch.tensor([[math.log(3.0), 5.0]])
    g = gates(x)  # softmax(log 3, 0) = (3/4, 1/4)
    torch.testing.assert_close(g, torch.tensor([[[0.75, 0.25]]]))
    experts = torch.tensor([[[4.0, 8.0]], [[0.0, 4.0]]])  # (E=2, B=1, H=2)
    torch.testing.assert_close(mix_experts(g, experts), torch.tensor([[[3.0, 7.0]]]))


def test_towers_place_multiclass_logits_in_task_order():
    torch.manual_seed(0)
    towers = Towers(3, 4, (), (1, 3, 1))
    h = torch.randn(3, 2, 4)
    out = towers(h)
    assert out.shape == (2, 5) and towers.slices == (slice(0, 1), slice(1, 4), slice(4, 5))
    full = towers.out(h)  # (T, B, 3)
    torch.testing.assert_close(out[:, 0], full[0, :, 0])
    torch.testing.assert_close(out[:, 1:4], full[1])
    torch.testing.assert_close(out[:, 4], full[2, :, 0])


def test_feature_encoder_looks_up_each_column_in_its_own_rows():
    enc = FeatureEncoder(2, (3, 4), embedding_dim=2)
    num = torch.randn(5, 2)
    cat = torch.tensor([[0, 3], [2, 1], [1, 0], [2, 2], [0, 0]])
    out = enc(num, cat)
    table = enc.embedding.weight
    torch.testing.assert_close(out[:, :2], num)
    torch.testing.assert_close(out[:, 2:4], table[cat[:, 0]])
    torch.testing.assert_close(out[:, 4:6], table[3 + cat[:, 1]])


@pytest.mark.parametrize("num_gates", [1, 3])
def test_gates_rows_sum_to_one(num_gates):
    g = Gates(7, 5, num_gates, bias=True)(torch.randn(11, 7))
    assert g.shape == (num_gates, 11, 5)
    torch.testing.assert_close(g.sum(-1), torch.ones(num_gates, 11))

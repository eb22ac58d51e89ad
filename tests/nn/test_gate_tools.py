"""Gate dropout and the load-balancing penalty: closed forms."""

import pytest
import torch

from mmoe.nn import Gates, gate_dropout, gate_dropout_softmax, load_balance


def _gates(g=2, b=64, e=5, seed=0):
    return torch.softmax(torch.randn(g, b, e, generator=torch.Generator().manual_seed(seed)), -1)


def test_gate_dropout_with_p_zero_is_the_identity():
    g = _gates()
    assert gate_dropout(g, 0.0) is g


def test_gate_dropout_rows_sum_to_one_and_keep_the_ratios_of_kept_experts():
    torch.manual_seed(0)
    g = _gates()
    out = gate_dropout(g, 0.5)
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 64))
    dropped = out == 0
    assert 0.3 < dropped.float().mean() < 0.7
    # kept experts keep their relative weights: out = g / (sum of kept g)
    scale = (g * ~dropped).sum(-1, keepdim=True)
    torch.testing.assert_close(out, torch.where(dropped, 0.0, g / scale))


def test_gate_dropout_keeps_a_row_whose_experts_were_all_dropped():
    torch.manual_seed(0)
    g = _gates(1, 200, 2)
    out = gate_dropout(g, 0.9)  # P(all dropped) = 0.81 per row
    all_kept = (out > 0).all(-1)
    assert all_kept.any()
    torch.testing.assert_close(out[all_kept], g[all_kept])
    torch.testing.assert_close(out.sum(-1), torch.ones(1, 200))


def test_gate_dropout_softmax_equals_gate_dropout_on_the_softmax_with_the_same_mask():
    z = torch.randn(2, 64, 5, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(3)
    from_logits = gate_dropout_softmax(z, 0.4)
    torch.manual_seed(3)
    torch.testing.assert_close(from_logits, gate_dropout(torch.softmax(z, -1), 0.4))
    assert (from_logits == 0).any()
    torch.testing.assert_close(gate_dropout_softmax(z, 0.0), torch.softmax(z, -1))


def _saturated():
    """One gate row putting all its weight on expert 0: the others underflow to 0 in
    float32 softmax (exp(-200)), so dropping expert 0 leaves nothing to renormalise."""
    return torch.tensor([[[0.0, -200.0, -201.0, -202.0]]], requires_grad=True)


def _dropping_expert_0(fn, z):
    """``fn``'s weights and gradients for the first RNG seed whose mask drops expert 0
    and keeps another."""
    for seed in range(100):
        torch.manual_seed(seed)
        keep = torch.rand(z.shape) >= 0.5
        if not keep[..., 0].any() and keep.any():
            torch.manual_seed(seed)
            z.grad = None
            g = fn(z)
            (g * torch.arange(1.0, 5.0)).sum().backward()
            return g, keep, z.grad
    raise AssertionError("no seed dropped expert 0")


def test_a_saturated_gate_whose_expert_is_dropped_shares_its_row_by_the_logits():
    # before: the kept weights summed to 0, the row became all zeros and the gradient NaN
    z = _saturated()
    g, keep, grad = _dropping_expert_0(lambda z: gate_dropout_softmax(z, 0.5), z)
    expected = torch.softmax(z.detach().masked_fill(~keep, float("-inf")), -1)
    torch.testing.assert_close(g.detach(), expected)
    assert float(g.detach().sum()) == pytest.approx(1.0)
    assert torch.isfinite(grad).all()


def test_gate_dropout_on_weights_keeps_a_row_with_nothing_left_to_renormalise():
    z = _saturated()
    g, _, grad = _dropping_expert_0(lambda z: gate_dropout(torch.softmax(z, -1), 0.5), z)
    torch.testing.assert_close(g.detach(), torch.softmax(z.detach(), -1))  # kept as it was
    assert torch.isfinite(grad).all()


def test_gate_dropout_softmax_keeps_experts_a_gate_cannot_see_at_zero():
    z = torch.tensor([[[0.0, 1.0, float("-inf"), float("-inf")]] * 50])
    torch.manual_seed(0)
    g = gate_dropout_softmax(z, 0.9)  # often both visible experts dropped: kept as they were
    assert torch.isfinite(g).all()
    assert (g[..., 2:] == 0).all()
    torch.testing.assert_close(g.sum(-1), torch.ones(1, 50))
    assert (g[..., :2] > 0).all(-1).any()  # some rows kept both


def test_gates_apply_dropout_only_in_training_mode():
    torch.manual_seed(0)
    gates = Gates(4, 6, 2, dropout=0.5)
    x = torch.randn(32, 4)
    assert (gates(x) == 0).any()
    gates.eval()
    assert (gates(x) > 0).all()


def test_load_balance_closed_form():
    uniform = torch.full((2, 7, 4), 0.25)
    assert float(load_balance(uniform)) == 0.0
    one_hot = torch.zeros(1, 3, 4)
    one_hot[..., 2] = 1.0
    assert float(load_balance(one_hot)) == pytest.approx(3.0)  # n - 1
    # u = (0.5, 0.5, 0, 0): 4 * 0.5 - 1 = 1; with only the first two visible: 2 * 0.5 - 1 = 0
    half = torch.tensor([[[1.0, 0.0, 0, 0], [0.0, 1.0, 0, 0]]])
    assert float(load_balance(half)) == pytest.approx(1.0)
    mask = torch.tensor([[True, True, False, False]])
    assert float(load_balance(half, mask)) == pytest.approx(0.0)

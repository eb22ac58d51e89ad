"""Gate dropout and the load-balancing penalty: closed forms."""

import pytest
import torch

from mmoe.nn import Gates, gate_dropout, load_balance


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

"""The native CPU kernels equal their pure-torch formulas in value and gradient, and a
machine without a compiler keeps working on the pure-torch path."""

import warnings

import pytest
import torch

from mmoe import native


def _rows(b, cards, seed=0):
    g = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([0, *cards[:-1]]).cumsum(0)
    return torch.stack([torch.randint(0, c, (b,), generator=g) for c in cards], 1) + offsets


@pytest.mark.parametrize("gates_n", [1, 3])
def test_mix_values_and_gradients_with_strided_experts(native_built, gates_n):
    g = torch.softmax(torch.randn(gates_n, 6, 4, dtype=torch.float64), -1).requires_grad_()
    block = torch.randn(6, 4, 5, dtype=torch.float64)  # (B, E, H): how experts often arrive
    x = block.transpose(0, 1).requires_grad_()  # (E, B, H), not contiguous
    torch.testing.assert_close(native.Mix.apply(g, x), torch.einsum("gbe,ebh->gbh", g, x))
    assert torch.autograd.gradcheck(native.Mix.apply, (g, x))


def test_a_failed_build_warns_once_and_keeps_the_torch_path(monkeypatch):
    from torch.utils import cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension\nc++: error: command not found")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.delenv("MMOE_NATIVE", raising=False)
    with pytest.warns(RuntimeWarning, match="native CPU kernels unavailable .*command not found"):
        assert not native.available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not at every call
        assert not native.usable(torch.zeros(2))
    from mmoe.nn import mix_experts
    g = torch.softmax(torch.randn(2, 5, 3), -1).requires_grad_()
    x = torch.randn(3, 5, 4, requires_grad=True)
    torch.testing.assert_close(mix_experts(g, x), torch.einsum("gbe,ebh->gbh", g, x))


def test_mmoe_native_0_skips_the_build(monkeypatch):
    from torch.utils import cpp_extension

    monkeypatch.setattr(cpp_extension, "load", lambda *a, **k: pytest.fail("built anyway"))
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("MMOE_NATIVE", "0")
    assert not native.available()


def test_the_build_is_keyed_on_source_flags_and_cpu(monkeypatch):
    name = native._build_name()
    monkeypatch.setattr(native, "_CFLAGS", [*native._CFLAGS, "-DX"])
    assert native._build_name() != name and name.startswith("mmoe_native_")


@pytest.mark.parametrize("n_num,with_bias", [(3, True), (0, False)])
def test_fold_linear_equals_the_dense_layer_in_value_and_gradients(native_built, n_num,
                                                                   with_bias):
    cards = (3, 6, 2)
    column = torch.repeat_interleave(torch.arange(3), torch.tensor(cards))
    rows = _rows(9, cards)
    emb = torch.randn(sum(cards), 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(n_num + 3 * 4, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True) if with_bias else None
    numeric = torch.randn(9, n_num, dtype=torch.float64) if n_num else None

    def folded(e, w, *b):
        return native.FoldLinear.apply(numeric, rows, e, w, b[0] if b else None, column)

    dense_x = torch.cat([*([numeric] if n_num else []), emb[rows].flatten(1)], 1)
    expected = dense_x @ weight + (bias if with_bias else 0)
    args = (emb, weight, *([bias] if with_bias else []))
    torch.testing.assert_close(folded(*args), expected)
    assert torch.autograd.gradcheck(folded, args)

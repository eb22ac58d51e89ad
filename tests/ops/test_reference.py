"""Every op's fast paths (the torch path and the native kernels) against its specification in
mmoe.ops.reference, for values and gradients, through the public dispatch."""

import pytest
import torch

from mmoe import ops
from mmoe.ops import reference, torch_paths


def _grads(fn, inputs, seed=0):
    """fn(*inputs) and the gradients of a fixed random projection of it w.r.t. every input."""
    inputs = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    outs = fn(*inputs)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    g = torch.Generator().manual_seed(seed)
    total = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    floats = [x for x in inputs if x.requires_grad]
    return [o.detach() for o in outs], torch.autograd.grad(total, floats, allow_unused=True)


def _same(fast, spec):
    (outs_f, grads_f), (outs_s, grads_s) = fast, spec
    for a, b in zip(outs_f, outs_s, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    for a, b in zip(grads_f, grads_s, strict=True):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("relu", [False, True])
def test_mix(kernels, relu):
    g = torch.Generator().manual_seed(0)
    gates = torch.softmax(torch.randn(3, 40, 13, generator=g, dtype=torch.float64), -1)
    experts = torch.randn(13, 40, 6, generator=g, dtype=torch.float64)
    experts = experts + 0.1 * experts.sign()  # away from the ReLU's kink
    _same(_grads(lambda a, b: ops.mix(a, b, relu), [gates, experts]),
          _grads(lambda a, b: reference.mix(a, b, relu), [gates, experts]))


@pytest.mark.parametrize("bias", [True, False])
def test_grouped_linear(kernels, bias):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 33, 7, generator=g, dtype=torch.float64)
    w = torch.randn(4, 7, 5, generator=g, dtype=torch.float64)
    b = torch.randn(4, 5, generator=g, dtype=torch.float64)
    args = [x, w, b] if bias else [x, w]
    _same(_grads(ops.grouped_linear, args), _grads(reference.grouped_linear, args))


@pytest.mark.parametrize("cards", [(3, 7, 2, 5), (3, 40, 5, 20, 17)])  # one-hot, index_add
@pytest.mark.parametrize("numeric", [3, 0])
def test_fold_linear(kernels, cards, numeric):
    g = torch.Generator().manual_seed(2)
    layout = ops.fold_layout(cards)
    b, d = 200, 4
    codes = torch.stack([torch.randint(0, c, (b,), generator=g) for c in cards], 1)
    codes[: b // 2, 1] = 1  # a skewed column: the native base row is its most frequent code
    num = torch.randn(b, numeric, generator=g, dtype=torch.float64) if numeric else None
    emb = torch.randn(sum(cards), d, generator=g, dtype=torch.float64)
    width = numeric + len(cards) * d
    weights = [torch.randn(3, width, 5, generator=g, dtype=torch.float64),
               torch.randn(2, width, 4, generator=g, dtype=torch.float64)]
    biases = [torch.randn(3, 5, generator=g, dtype=torch.float64), None]

    def fast(emb, w0, w1, b0):  # the inputs are data: gradients for the parameters only
        return ops.fold_linear(num, codes, layout, emb, [w0, w1], [b0, None])

    def spec(emb, w0, w1, b0):
        return reference.fold_linear(num, codes, layout.offsets, emb, [w0, w1], [b0, None])

    args = [emb, weights[0], weights[1], biases[0]]
    _same(_grads(fast, args), _grads(spec, args))


def test_gather_sum_torch_path():
    g = torch.Generator().manual_seed(3)
    table = torch.randn(9, 4, generator=g, dtype=torch.float64)
    rows = torch.randint(0, 9, (30, 5), generator=g)
    _same(_grads(lambda t: torch_paths.gather_sum(t, rows), [table]),
          _grads(lambda t: reference.gather_sum(t, rows), [table]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64])
def test_take_rows(kernels, dtype):
    g = torch.Generator().manual_seed(4)
    columns = [(torch.randn(100, 3, generator=g) * 50).to(dtype), torch.randn(100, generator=g)]
    index = torch.randint(0, 100, (250,), generator=g)
    for got, want in zip(ops.take_rows(columns, index), reference.take_rows(columns, index),
                         strict=True):
        assert torch.equal(got, want)


def test_linear_groups_equals_each_layer_alone():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(11, 6, generator=g, dtype=torch.float64)
    w = [torch.randn(3, 6, 4, generator=g, dtype=torch.float64),
         torch.randn(2, 6, 5, generator=g, dtype=torch.float64)]
    b = [None, torch.randn(2, 5, generator=g, dtype=torch.float64)]
    first, second = ops.linear_groups(x, w, b)
    torch.testing.assert_close(first, torch.einsum("bi,gio->gbo", x, w[0]))
    torch.testing.assert_close(second, torch.einsum("bi,gio->gbo", x, w[1]) + b[1][:, None])


def test_no_op_builds_the_kernels(monkeypatch):
    """Dispatch reads whether the kernels are built; only build_native builds them."""
    from mmoe.ops.native import loader

    monkeypatch.setattr(loader, "_state", {})
    monkeypatch.setattr(loader, "_load", lambda: pytest.fail("built from inside an op"))
    g = torch.softmax(torch.randn(1, 4, 2), -1).requires_grad_()
    ops.mix(g, torch.randn(2, 4, 3))
    ops.grouped_linear(torch.randn(2, 4, 3), torch.randn(2, 3, 5))
    ops.take_rows([torch.randn(5, 2)], torch.tensor([1, 0]))
    assert not ops.native_ready()

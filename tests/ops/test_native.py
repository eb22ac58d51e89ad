"""The native CPU kernels equal their pure-torch formulas in value and gradient, and a
machine without a compiler keeps working on the pure-torch path."""

import warnings
from pathlib import Path

import pytest
import torch

from mmoe.ops import native
from mmoe.ops.native import loader as native_build


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
    # the experts' ReLU fused in: away from the kink, the gradient is the finite difference's
    z = (block + 0.2 * block.sign()).transpose(0, 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda g, z: native.Mix.apply(g, z, True), (g, z))


def test_mix_with_relu_masks_the_gradient_like_torch_relu(native_built):
    """Where a pre-activation is exactly 0 or below, its gradient is 0, as torch.relu's."""
    gates = torch.tensor([[[0.25, 0.25, 0.5]]], requires_grad=True)
    z = torch.tensor([[[2.0, 0.0]], [[-1.0, 3.0]], [[0.5, -0.0]]], requires_grad=True)
    out = native.Mix.apply(gates, z, True)
    assert out.tolist() == [[[0.75, 0.75]]]
    out.sum().backward()
    want = torch.autograd.grad(torch.einsum("gbe,ebh->gbh", gates, torch.relu(z)).sum(), z)[0]
    assert torch.equal(z.grad, want)
    assert z.grad[:, 0].tolist() == [[0.25, 0.0], [0.0, 0.25], [0.5, 0.0]]


def test_a_failed_build_warns_once_and_keeps_the_torch_path(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))  # build folders land here

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension\nc++: error: command not found")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    monkeypatch.setattr(native_build, "_state", {})
    monkeypatch.delenv("MMOE_NATIVE", raising=False)
    with pytest.warns(RuntimeWarning, match="native CPU kernels unavailable .*command not found"):
        assert not native_build.build()
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
    monkeypatch.setattr(native_build, "_state", {})
    monkeypatch.setenv("MMOE_NATIVE", "0")
    assert not native_build.build()


def test_the_build_is_keyed_on_source_flags_cpu_and_torch(monkeypatch):
    name = native_build._build_name()
    monkeypatch.setattr(native_build, "_CFLAGS", [*native_build._CFLAGS, "-DX"])
    assert native_build._build_name() != name and name.startswith("mmoe_native_")
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    assert native_build._build_name() != name




CARDS = (3, 6, 2, 40)


def _fold_inputs(dtype, b, layers, n_num=3, d=4, cards=CARDS, seed=0, skewed=False):
    """numeric, codes, offsets, emb, column and [(weight, bias | None)] for FoldLinear;
    layers = [(G, O, with_bias)]. ``skewed``: like tabular data, most rows of a column share one
    code (the last column: all of them)."""
    g = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([0, *cards[:-1]]).cumsum(0)
    codes = _rows(b, cards, seed) - offsets
    if skewed:
        common = torch.rand(codes.shape, generator=g) < 0.8
        common[:, -1] = True
        codes = torch.where(common, torch.tensor(cards) // 2, codes)
    column = torch.repeat_interleave(torch.arange(len(cards)), torch.tensor(cards))
    emb = torch.randn(sum(cards), d, dtype=dtype, generator=g)
    params = [(torch.randn(gr, n_num + len(cards) * d, o, dtype=dtype, generator=g),
               torch.randn(gr, o, dtype=dtype, generator=g) if bias else None)
              for gr, o, bias in layers]
    numeric = torch.randn(b, n_num, dtype=dtype, generator=g) if n_num else None
    return numeric, codes, offsets, emb, column, params


def _fold(numeric, codes, offsets, emb, column, weights, biases):
    return native.FoldLinear.apply(numeric, codes, offsets, emb, column, len(weights),
                                   *weights, *biases)


def _dense(numeric, codes, offsets, emb, weights, biases):
    x = torch.cat([*([numeric] if numeric is not None else []),
                   emb[codes + offsets].flatten(1)], 1)  # (B, I)
    return [torch.einsum("bi,gio->gbo", x, w) + (0 if b is None else b[:, None])
            for w, b in zip(weights, biases, strict=True)]


@pytest.mark.parametrize("n_num,skewed", [(3, False), (0, False), (3, True)])
def test_fold_linear_equals_the_dense_layers_in_value_and_gradients(native_built, n_num, skewed):
    numeric, codes, offsets, emb, column, params = _fold_inputs(
        torch.float64, 9, [(3, 5, True), (2, 4, False)], n_num=n_num, cards=(3, 6, 2),
        skewed=skewed)
    weights = [w.requires_grad_() for w, _ in params]
    biases = [b if b is None else b.requires_grad_() for _, b in params]
    emb.requires_grad_()
    outs = _fold(numeric, codes, offsets, emb, column, weights, biases)
    for got, want in zip(outs, _dense(numeric, codes, offsets, emb, weights, biases),
                         strict=True):
        torch.testing.assert_close(got, want)

    def folded(e, w0, b0, w1):
        return _fold(numeric, codes, offsets, e, column, [w0, w1], [b0, None])

    assert torch.autograd.gradcheck(folded, (emb, weights[0], biases[0], weights[1]))


def test_fold_linear_an_unused_output_gets_zero_gradients(native_built):
    numeric, codes, offsets, emb, column, params = _fold_inputs(
        torch.float32, 16, [(2, 8, True), (3, 4, True)])
    weights = [w.requires_grad_() for w, _ in params]
    biases = [b.requires_grad_() for _, b in params]
    first, _ = _fold(numeric, codes, offsets, emb.requires_grad_(), column, weights, biases)
    first.sum().backward()
    assert not weights[1].grad.any() and not biases[1].grad.any()
    want = _dense(numeric, codes, offsets, emb, weights[:1], biases[:1])[0]
    grads = torch.autograd.grad(want.sum(), (emb, weights[0], biases[0]))
    torch.testing.assert_close(emb.grad, grads[0])
    torch.testing.assert_close(weights[0].grad, grads[1])
    torch.testing.assert_close(biases[0].grad, grads[2])


# Widths covering every vector block the kernels use (4, 2 and 1 vectors of 32 bytes, then
# scalars): 8 floats or 4 doubles per vector.
@pytest.mark.parametrize("dtype,width", [(torch.float32, 32 + 16 + 8 + 3),
                                         (torch.float64, 16 + 8 + 4 + 3)])
def test_fold_linear_and_mix_at_every_block_width(native_built, dtype, width):
    numeric, codes, offsets, emb, column, params = _fold_inputs(
        dtype, 37, [(2, width, True), (3, 8, False)], skewed=True)
    weights = [w.requires_grad_() for w, _ in params]
    biases = [b if b is None else b.requires_grad_() for _, b in params]
    leaves = (emb.requires_grad_(), *weights, biases[0])
    outs = _fold(numeric, codes, offsets, emb, column, weights, biases)
    dense = _dense(numeric, codes, offsets, emb, weights, biases)
    grads = [torch.randn_like(o) for o in outs]
    for got, want in zip(outs, dense, strict=True):
        torch.testing.assert_close(got, want)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}  # long float sums
    for got, want in zip(torch.autograd.grad(outs, leaves, grads),
                         torch.autograd.grad(dense, leaves, grads), strict=True):
        torch.testing.assert_close(got, want, **tol)

    # 13 experts: more than a vector has lanes, in float32 and float64
    gates = torch.softmax(torch.randn(2, 37, 13, dtype=dtype), -1).requires_grad_()
    experts = torch.randn(37, 13, width, dtype=dtype).transpose(0, 1).requires_grad_()
    for relu in (False, True):  # with relu: the experts' ReLU fused into the mixing
        mixed = native.Mix.apply(gates, experts, relu)
        expected = torch.einsum("gbe,ebh->gbh", gates,
                                torch.relu(experts) if relu else experts)
        torch.testing.assert_close(mixed, expected)
        grad = torch.randn_like(mixed)
        for a, b in zip(torch.autograd.grad(mixed, (gates, experts), grad),
                        torch.autograd.grad(expected, (gates, experts), grad), strict=True):
            torch.testing.assert_close(a, b)


def test_results_do_not_depend_on_the_thread_count(native_built):
    """The kernels' threads split rows, segments or column blocks, never one sum: results are
    bit-identical at any thread count."""
    numeric, codes, offsets, emb, column, params = _fold_inputs(
        torch.float32, 2048, [(8, 16, True), (2, 8, False)], n_num=7, d=8, skewed=True)
    weights, biases = [w for w, _ in params], [b for _, b in params]
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(8, 2048, 16, generator=g), torch.randn(2, 2048, 8, generator=g)]
    gates = torch.softmax(torch.randn(2, 2048, 8, generator=g), -1)
    experts = torch.randn(8, 2048, 16, generator=g)
    mix_grad = torch.randn(2, 2048, 16, generator=g)
    ops = torch.ops.mmoe_native
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            *outs, start, base, rows = ops.fold_linear(numeric, codes, offsets, emb, column,
                                                       weights, biases)
            d_emb, d_w, d_b = ops.fold_linear_backward(grads, numeric, start, base, rows, emb,
                                                       column, weights)
            results.append([*outs, d_emb, *d_w, *d_b, ops.mix(gates, experts),
                            *ops.mix_backward(mix_grad, gates, experts),
                            ops.grouped_linear(experts, weights[0][:, :16], biases[0]),
                            *ops.grouped_linear_backward(grads[0], experts, weights[0][:, :16])])
    finally:
        torch.set_num_threads(threads)
    for one, two in zip(*results, strict=True):
        assert torch.equal(one, two)
    # and right, with most rows past the sample that picks each column's base row
    for got, want in zip(results[0][:2], _dense(numeric, codes, offsets, emb, weights, biases),
                         strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("col", [3, 0])  # past the table's end; into the next column's rows
def test_fold_linear_rejects_codes_outside_their_column(native_built, col):
    numeric, codes, offsets, emb, column, params = _fold_inputs(torch.float32, 5, [(1, 8, True)])
    codes[3, col] = CARDS[col]  # one past the column's codes
    with pytest.raises(RuntimeError, match=f"code {CARDS[col]} of column {col} "
                                           f"\\(row {offsets[col] + CARDS[col]}\\) is outside"):
        _fold(numeric, codes, offsets, emb, column, [params[0][0]], [params[0][1]])


def test_fold_linear_lookups_skip_each_columns_most_frequent_row(native_built):
    """Only the lookups other than each column's base row (its most frequent row among the
    batch's first 128 rows, the first of equals) are gathered and scattered."""
    codes = torch.tensor([[0, 1], [0, 0], [1, 1]])
    offsets, column = torch.tensor([0, 2]), torch.tensor([0, 0, 1, 1])
    emb, weight = torch.randn(4, 2), torch.randn(1, 4, 3)
    *_, start, base, rows = torch.ops.mmoe_native.fold_linear(
        None, codes, offsets, emb, column, [weight], [None])
    assert base.tolist() == [0, 3]  # rows 0, 0, 1 and 3, 2, 3
    assert start.tolist() == [0, 0, 1, 2] and rows[:2].tolist() == [2, 1]
    *_, start, base, rows = torch.ops.mmoe_native.fold_linear(
        None, codes[1:], offsets, emb, column, [weight], [None])
    assert base.tolist() == [0, 2] and start.tolist() == [0, 0, 2]  # ties: the first row


def test_fold_linear_backward_needs_each_columns_rows_together(native_built):
    """The backward sums a column's vocabulary rows as one contiguous range (the encoder's
    layout); a column map in another order is refused, not silently mis-summed."""
    numeric, codes, offsets, emb, column, params = _fold_inputs(torch.float32, 5, [(1, 8, True)])
    ops = torch.ops.mmoe_native
    *outs, start, base, rows = ops.fold_linear(numeric, codes, offsets, emb, column,
                                               [params[0][0]], [params[0][1]])
    shuffled = column.flip(0)
    with pytest.raises(RuntimeError, match="number the columns in order"):
        ops.fold_linear_backward(outs, numeric, start, base, rows, emb, shuffled, [params[0][0]])


@pytest.mark.parametrize("dtype,width", [(torch.float32, 32 + 16 + 8 + 3),
                                         (torch.float64, 16 + 8 + 4 + 3), (torch.float64, 1)])
def test_grouped_linear_equals_bmm_in_value_and_gradients(native_built, dtype, width):
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 6, width, dtype=dtype, generator=g, requires_grad=True)
    bias = torch.randn(3, width, dtype=dtype, generator=g, requires_grad=True)
    block = torch.randn(11, 3, 6, dtype=dtype, generator=g)  # (B, G, I)
    for x in (block.transpose(0, 1).requires_grad_(),  # strided, as stacked inputs arrive
              torch.randn(1, 11, 6, dtype=dtype, generator=g).expand(3, -1, -1)):  # shared
        out = native.GroupedLinear.apply(x, weight, bias)
        want = torch.bmm(x, weight) + bias[:, None]
        torch.testing.assert_close(out, want)
        leaves = [t for t in (x, weight, bias) if t.requires_grad]
        grad = torch.randn_like(out)
        tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}
        for a, b in zip(torch.autograd.grad(out, leaves, grad),
                        torch.autograd.grad(want, leaves, grad), strict=True):
            torch.testing.assert_close(a, b, **tol)
    if dtype == torch.float64:
        x = block.transpose(0, 1).requires_grad_()
        assert torch.autograd.gradcheck(native.GroupedLinear.apply, (x, weight, bias))
        assert torch.autograd.gradcheck(native.GroupedLinear.apply, (x, weight, None))


def test_a_compiler_without_openmp_gets_the_serial_build(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))  # build folders land here

    tried = []

    def load(name, sources, extra_cflags, extra_ldflags, **kwargs):
        tried.append((name, "-fopenmp" in extra_cflags + extra_ldflags))
        if "-fopenmp" in extra_cflags:
            raise RuntimeError("c++: error: unsupported option '-fopenmp'")

    monkeypatch.setattr(cpp_extension, "load", load)
    monkeypatch.setattr(native_build, "_register_fakes", lambda: None)
    monkeypatch.setattr(native_build, "_state", {})
    monkeypatch.delenv("MMOE_NATIVE", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the serial build is fine: no warning
        assert native_build.build()
    assert [openmp for _, openmp in tried] == [True, False]
    assert tried[0][0] != tried[1][0]  # separate build names for the two flag sets


def test_the_kernels_link_torchs_openmp_runtime(native_built):
    """The kernels link the libgomp that torch loaded, not another package's copy (scikit-learn
    brings one): torch.set_num_threads governs them and no second thread pool spins."""
    import sklearn.metrics  # noqa: F401  (loads scikit-learn's own libgomp)

    cflags, ldflags = native_build._openmp_flags()
    torch_dir = Path(torch.__file__).resolve().parent
    lib_dir = Path(next(f for f in ldflags if f.startswith("-L"))[2:]).resolve()
    assert cflags == ["-fopenmp"]
    assert lib_dir in (torch_dir / "lib", torch_dir.parent / "torch.libs"), ldflags



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.int16])
def test_take_rows_equals_index_select(native_built, dtype):
    g = torch.Generator().manual_seed(0)
    columns = [(torch.randn(*shape, generator=g) * 100).to(dtype)
               for shape in ((300, 7), (300,), (300, 3, 2))]
    index = torch.randint(0, 300, (1000,), generator=g)  # repeats; several prefetch windows
    for idx in (index, index[:0]):
        for got, column in zip(native.take_rows(columns, idx), columns, strict=True):
            assert torch.equal(got, column.index_select(0, idx))
    with pytest.raises(RuntimeError, match="index 300 out of range for 300 rows"):
        native.take_rows(columns, torch.tensor([0, 300]))
    mask = torch.zeros(300, dtype=torch.bool)  # not an index: left to index_select to refuse
    assert native.take_rows(columns, mask) is None
    with pytest.raises(RuntimeError, match="int64 or int32"):
        torch.ops.mmoe_native.take_rows(columns, mask)


def test_table_take_uses_the_native_gather_and_equals_the_torch_path(native_built, monkeypatch):
    from mmoe.data.table import TensorTable

    g = torch.Generator().manual_seed(0)
    table = TensorTable(torch.randn(50, 3, generator=g), torch.randint(0, 9, (50, 4), generator=g),
                        torch.rand(50, 2, generator=g), torch.rand(50, generator=g))
    index = torch.randint(0, 50, (70,), generator=g)
    taken = []  # what the native gather returned: rows, then None (the torch path's turn)

    def spy(*args, take=native.take_rows):
        taken.append(take(*args))
        return taken[-1]

    monkeypatch.setattr(native, "take_rows", spy)
    fast = table.take(index)
    monkeypatch.setitem(native_build._state, "ok", False)  # as without a compiler
    plain = table.take(index)
    assert taken[0] is not None and taken[1] is None
    for name in ("numeric", "categorical", "labels", "weights"):
        assert torch.equal(getattr(fast, name), getattr(plain, name))


def test_the_build_directory_is_torchs(monkeypatch, tmp_path):
    """The built library is looked up without importing torch.utils.cpp_extension; the folder
    must stay the one torch builds into, with and without TORCH_EXTENSIONS_DIR."""
    from torch import _appdirs
    from torch.utils import cpp_extension

    monkeypatch.setattr(_appdirs, "user_cache_dir", lambda appname: str(tmp_path / appname))
    for env in (None, str(tmp_path / "ext")):
        if env is None:
            monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
        else:
            monkeypatch.setenv("TORCH_EXTENSIONS_DIR", env)
        assert native_build._build_directory("probe") == Path(
            cpp_extension._get_build_directory("probe", verbose=False))


def test_a_built_library_is_loaded_without_the_build_step(native_built, monkeypatch):
    from torch.utils import cpp_extension

    monkeypatch.setattr(cpp_extension, "load", lambda *a, **k: pytest.fail("built again"))
    monkeypatch.setattr(native_build, "_register_fakes", lambda: None)  # registered once already
    monkeypatch.setattr(native_build, "_state", {})
    assert native_build.build()


def test_a_broken_library_file_is_rebuilt(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    name = native_build._build_name()
    (tmp_path / name).mkdir()
    (tmp_path / name / f"{name}.so").write_bytes(b"an interrupted link")
    built = []
    monkeypatch.setattr(cpp_extension, "load", lambda name, *a, **k: built.append(name))
    monkeypatch.setattr(native_build, "_register_fakes", lambda: None)
    monkeypatch.setattr(native_build, "_state", {})
    assert native_build.build() and built == [name]

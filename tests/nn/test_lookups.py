"""Pooled table lookups (mmoe.ops.pooled_lookup) against a plain dense formula, values and
gradients, dense and sparse; shared tables in the model are one parameter whose gradient sums
every lookup that reads it."""

import pytest
import torch

from mmoe import TaskSpec, build_model, ops
from mmoe.config import InputSpec, Lookup
from mmoe.nn import FeatureEncoder
from mmoe.ops import reference

V, D = 9, 3
IDS = torch.tensor([[1, 2, 2, 0],   # a repeated id counts twice
                    [0, 0, 0, 0],   # all padding: zeros, no gradient
                    [8, 0, 3, 0],   # padding between ids
                    [5, 5, 5, 5],
                    [0, 0, 0, 7]])


def _table(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(V, D, generator=g, dtype=torch.float64)


def _dense_reference(ids, table, pooling):
    """counts (B, V) @ table, row 0 never counted; mean divides by the ids present."""
    counts = torch.zeros(ids.shape[0], table.shape[0], dtype=table.dtype)
    for b, row in enumerate(ids.tolist()):
        for i in row:
            if i != 0:
                counts[b, i] += 1
    if pooling == "mean":
        counts = counts / counts.sum(1, keepdim=True).clamp_min(1)
    return counts @ table


def _value_and_grad(fn, ids, pooling, seed=1):
    table = _table().requires_grad_(True)
    out = fn(ids, table, pooling)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed),
                          dtype=out.dtype)
    (out * weights).sum().backward()
    return out.detach(), table.grad


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_values_and_gradients_equal_a_dense_reference(pooling):
    out, grad = _value_and_grad(ops.pooled_lookup, IDS, pooling)
    ref_out, ref_grad = _value_and_grad(_dense_reference, IDS, pooling)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)
    table = _table()
    # hand-checked rows: row 0 sums/averages ids 1, 2, 2; row 2 ids 8 and 3
    first = table[1] + 2 * table[2]
    third = table[8] + table[3]
    if pooling == "mean":
        first, third = first / 3, third / 2
    torch.testing.assert_close(out[0], first, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[2], third, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[3], table[5] * (4 if pooling == "sum" else 1),
                               rtol=1e-12, atol=1e-12)
    assert torch.equal(out[1], torch.zeros(D, dtype=torch.float64))  # all padding
    # the padding row and the rows no batch row used get no gradient
    unused = [0, 4, 6]
    assert torch.equal(grad[unused], torch.zeros(len(unused), D, dtype=torch.float64))
    assert grad[[1, 2, 3, 5, 7, 8]].abs().sum(1).gt(0).all()


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_all_padding_rows_give_zeros_and_no_gradient(pooling):
    ids = torch.zeros(3, 5, dtype=torch.long)
    for fn in (ops.pooled_lookup, reference.pooled_lookup):
        out, grad = _value_and_grad(fn, ids, pooling)
        assert torch.equal(out, torch.zeros(3, D, dtype=torch.float64))
        assert grad is None or torch.equal(grad, torch.zeros(V, D, dtype=torch.float64))


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_sparse_gradient_equals_the_dense_one(pooling):
    out, dense = _value_and_grad(ops.pooled_lookup, IDS, pooling)
    out_s, sparse = _value_and_grad(
        lambda i, t, p: ops.pooled_lookup(i, t, p, sparse=True), IDS, pooling)
    assert sparse.is_sparse and not dense.is_sparse
    assert torch.equal(out_s, out)
    torch.testing.assert_close(sparse.to_dense(), dense, rtol=1e-12, atol=1e-12)
    # the sparse gradient holds only the rows the batch used (and maybe the padding row)
    held = set(sparse.coalesce().indices()[0].tolist()) - {0}
    assert held == {1, 2, 3, 5, 7, 8}


@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_reference_equals_the_embedding_bag_path(pooling):
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 40, (64, 7), generator=g)
    ids[ids < 15] = 0  # plenty of padding, and some rows without ids
    ids[:4] = 0
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        table = torch.randn(40, 6, generator=g, dtype=dtype)
        a, ga = _grads(ops.pooled_lookup, ids, table, pooling)
        b, gb = _grads(reference.pooled_lookup, ids, table, pooling)
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
        torch.testing.assert_close(ga, gb, rtol=tol, atol=tol)


def _grads(fn, ids, table, pooling):
    table = table.clone().requires_grad_(True)
    out = fn(ids, table, pooling)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
    (out * w).sum().backward()
    return out.detach(), table.grad


# ---- shared tables in the encoder and the model ----------------------------------------------
LOOKUPS = (Lookup("item_id", "item_id", rows=V, dim=D),
           Lookup("history", "item_id", rows=V, dim=D, slots=3, pooling="mean"),
           Lookup("user_id", "user_id", rows=5, dim=2))
# per row: item_id (1 slot), history (3 slots), user_id (1 slot)
ENC_IDS = torch.tensor([[4, 1, 4, 0, 2],
                        [4, 0, 0, 0, 0],
                        [0, 8, 8, 8, 3],
                        [7, 4, 0, 6, 1]])


def test_encoder_shares_one_table_and_sums_both_gradients():
    torch.manual_seed(0)
    enc = FeatureEncoder(0, (), lookups=LOOKUPS)
    assert len(enc.tables) == 2  # item_id's table once, user_id's
    assert [lk[0] for lk in enc.lookups] == [0, 0, 1]
    items, users = enc.tables
    assert items.shape == (V, D) and users.shape == (5, 2)
    out = enc(None, None, ENC_IDS)
    assert out.shape == (4, 2 * D + 2) and enc.out_features == 2 * D + 2
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    (out * w).sum().backward()
    assert items.grad.is_sparse

    # the same loss, the table's two uses computed apart on a dense copy of it
    table = items.detach().clone()
    parts = []
    for cols, wcols, pooling in (([0], slice(0, D), "sum"), ([1, 2, 3], slice(D, 2 * D), "mean")):
        t = table.clone().requires_grad_(True)
        (reference.pooled_lookup(ENC_IDS[:, cols], t, pooling) * w[:, wcols]).sum().backward()
        parts.append(t.grad)
        assert parts[-1].abs().sum() > 0
    torch.testing.assert_close(items.grad.to_dense(), parts[0] + parts[1])
    # the values too: [item (sum of one id), history (mean), user]
    torch.testing.assert_close(out[:, :D], table[ENC_IDS[:, 0]] * (ENC_IDS[:, :1] != 0))
    torch.testing.assert_close(out[2, D:2 * D], table[8])
    torch.testing.assert_close(out[3, D:2 * D], (table[4] + table[6]) / 2)
    torch.testing.assert_close(out[:, 2 * D:],
                               users.detach()[ENC_IDS[:, 4]] * (ENC_IDS[:, 4:] != 0))
    assert not out[1, 2 * D:].any()  # user id 0: missing


def _model():
    torch.manual_seed(0)
    inputs = InputSpec(numeric=("price",), categorical=(("device", 4),), embedding_dim=2,
                       lookups=LOOKUPS)
    return build_model("mmoe", inputs, [TaskSpec("click"), TaskSpec("buy")], num_experts=2,
                       expert_units=(4,), tower_units=(3,))


def test_model_holds_one_parameter_per_table():
    model = _model()
    params = list(model.parameters())
    assert len({p.data_ptr() for p in params}) == len(params)  # no parameter twice
    tables = [p for p in params if p.shape in ((V, D), (5, 2))]
    assert len(tables) == 2
    assert {p.data_ptr() for p in model.sparse_parameters()} == {p.data_ptr() for p in tables}
    # both lookups of item_id read one storage: a change to it shows in both
    items = model.encoder.tables[0]
    assert items.data_ptr() == tables[0].data_ptr()
    enc = model.encoder
    x = enc(torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.long), torch.tensor([[4, 4, 0, 0, 0]]))
    with torch.no_grad():
        items[4] += 1.0
    y = enc(torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.long), torch.tensor([[4, 4, 0, 0, 0]]))
    offset = 1 + 2  # numeric, device embedding
    torch.testing.assert_close(y[0, offset:offset + 2 * D] - x[0, offset:offset + 2 * D],
                               torch.ones(2 * D))


def test_model_sparse_parameters_are_exactly_the_tables_with_sparse_gradients():
    model = _model()
    logits = model(torch.randn(4, 1), torch.tensor([[1], [2], [0], [3]]), ENC_IDS)
    assert logits.shape == (4, 2)
    logits.sum().backward()
    sparse = [p for p in model.parameters() if p.grad is not None and p.grad.is_sparse]
    assert {id(p) for p in sparse} == {id(p) for p in model.sparse_parameters()}
    assert len(model.sparse_parameters()) == 2
    # rows no lookup read (item rows 2, 3, 5; user row 4) and row 0 get no gradient
    items, users = (p.grad.to_dense() for p in model.sparse_parameters())
    assert not items[[0, 2, 3, 5]].any() and items[[1, 4, 6, 7, 8]].abs().sum(1).gt(0).all()
    assert not users[[0, 4]].any() and users[[1, 2, 3]].abs().sum(1).gt(0).all()
    plain = build_model("mmoe", 3, [TaskSpec("y")])
    assert plain.sparse_parameters() == []


def test_the_traced_lookup_is_the_plain_formula_with_the_same_values():
    """Export traces the reference formula (no embedding_bag): the traced graph gives the
    eager values on other ids too."""
    g = torch.Generator().manual_seed(6)
    table = torch.randn(30, 4, generator=g)
    ids = torch.randint(0, 30, (5, 6), generator=g)
    traced = torch.jit.trace(lambda i, t: ops.pooled_lookup(i, t, "mean"), (ids, table))
    assert "embedding_bag" not in str(traced.graph)
    other = torch.randint(0, 30, (9, 6), generator=g)
    other[0] = 0
    torch.testing.assert_close(traced(other, table), ops.pooled_lookup(other, table, "mean"))
    assert not traced(other, table)[0].any()

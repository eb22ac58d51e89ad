"""The lookups' interactions: ``cross`` (the products of every two lookups of one width appended
to x) and ``wide`` (a learnt bias per table row and task added to the logits), against plain
dense formulas, values and gradients; sparse rows only; the model without them at init."""

import pytest
import torch

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.config import InputSpec, Lookup
from mmoe.config.inputs import cross_pairs
from mmoe.data.table import TensorTable
from mmoe.nn import FeatureEncoder
from mmoe.ops import reference
from mmoe.train import Trainer

V, D = 9, 3
LOOKUPS = (Lookup("item_id", "item_id", rows=V, dim=D),
           Lookup("history", "item_id", rows=V, dim=D, slots=3, pooling="mean"),
           Lookup("user_id", "user_id", rows=5, dim=D),
           Lookup("city", "city", rows=4, dim=2))
# per row: item_id (1 slot), history (3 slots), user_id (1 slot), city (1 slot)
IDS = torch.tensor([[4, 1, 4, 0, 2, 1],
                    [4, 0, 0, 0, 0, 3],
                    [0, 8, 8, 8, 3, 0],
                    [7, 4, 0, 6, 1, 2]])
TASKS = [TaskSpec("click"), TaskSpec("buy")]


def _inputs(**changes):
    return InputSpec(numeric=("price",), lookups=changes.get("lookups", LOOKUPS))


def _pooled(ids, table, pooling):
    """A plain dense formula: the rows present, summed or averaged (0 = padding)."""
    return reference.pooled_lookup(ids, table, pooling)


def test_cross_pairs_are_the_lookups_of_one_width():
    assert cross_pairs([D, D, D, 2]) == ((0, 1), (0, 2), (1, 2))
    assert cross_pairs([4, 8]) == ()


def test_cross_appends_each_pair_product_with_dense_values_and_gradients():
    torch.manual_seed(0)
    enc = FeatureEncoder(0, (), lookups=LOOKUPS,
                         cross=cross_pairs([lk.dim for lk in LOOKUPS]))
    # the lookups, then the products (item, hist), (item, user), (hist, user): city has none
    assert enc.out_features == 3 * D + 2 + 3 * D
    out = enc(None, None, IDS)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * w).sum().backward()
    items, users = (t.detach().clone().requires_grad_(True) for t in enc.tables[:2])
    cities = enc.tables[2].detach()
    item = _pooled(IDS[:, :1], items, "mean")
    hist = _pooled(IDS[:, 1:4], items, "mean")
    user = _pooled(IDS[:, 4:5], users, "mean")
    city = _pooled(IDS[:, 5:6], cities, "mean")
    ref = torch.cat([item, hist, user, city, item * hist, item * user, hist * user], 1)
    torch.testing.assert_close(out.detach(), ref.detach())
    (ref * w).sum().backward()
    torch.testing.assert_close(enc.tables[0].grad.to_dense(), items.grad)
    torch.testing.assert_close(enc.tables[1].grad.to_dense(), users.grad)
    # hand-checked: row 3's history is the mean of items 4 and 6, times its item 7
    table = enc.tables[0].detach()
    torch.testing.assert_close(out[3, 3 * D + 2:4 * D + 2].detach(),
                               table[7] * (table[4] + table[6]) / 2)
    assert not out[2, 3 * D + 2:4 * D + 2].any()  # no item in row 2: its products are zeros


def test_wide_terms_are_the_pooled_row_weights_added_to_each_logit():
    torch.manual_seed(0)
    plain = build_model("mmoe", _inputs(), TASKS, num_experts=2, expert_units=(4,))
    torch.manual_seed(0)
    model = build_model("mmoe", _inputs(), TASKS, num_experts=2, expert_units=(4,), wide=True)
    numeric = torch.randn(4, 1)
    # the wide weights start at zero and are drawn last: the same model at init
    torch.testing.assert_close(model(numeric, None, IDS), plain(numeric, None, IDS))
    items, users, cities = model.wide.tables
    assert [t.shape for t in model.wide.tables] == [(V, 2), (5, 2), (4, 2)]
    with torch.no_grad():
        for t in model.wide.tables:
            t.copy_(torch.randn(t.shape))
    expected = (plain(numeric, None, IDS) + items[IDS[:, 0]] * (IDS[:, :1] != 0)
                + _pooled(IDS[:, 1:4], items, "mean") + users[IDS[:, 4]] * (IDS[:, 4:5] != 0)
                + cities[IDS[:, 5]] * (IDS[:, 5:] != 0))
    torch.testing.assert_close(model(numeric, None, IDS), expected.detach())


def test_wide_weights_get_sparse_gradients_of_the_rows_used_and_train_with_the_tables():
    torch.manual_seed(0)
    model = build_model("mmoe", _inputs(), TASKS, num_experts=2, expert_units=(4,), wide=True)
    assert {id(p) for p in model.sparse_parameters()} == (
        {id(p) for p in model.encoder.tables} | {id(p) for p in model.wide.tables})
    model(torch.randn(4, 1), None, IDS).sum().backward()
    items = model.wide.tables[0].grad
    assert items.is_sparse
    used = {1, 4, 6, 7, 8}
    dense = items.to_dense()
    assert dense[sorted(used)].abs().sum(1).gt(0).all()
    assert not dense[[r for r in range(V) if r not in used]].any()
    # one step of the Trainer moves the rows a batch used and no other
    torch.manual_seed(0)
    model = build_model("mmoe", _inputs(), TASKS, num_experts=2, expert_units=(4,), wide=True)
    table = TensorTable(torch.randn(4, 1), None,
                         torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]]),
                         ids=IDS)
    Trainer(model, TrainConfig(epochs=1, batch_size=4, lr=0.01), progress=False).fit(table)
    moved = model.wide.tables[0].detach().abs().sum(1).gt(0)
    assert moved.nonzero().flatten().tolist() == sorted(used)


@pytest.mark.parametrize("setting, lookups, needle", [
    ("wide", (), "wide applies to lookup columns"),
    ("cross", (), "cross multiplies two lookup columns of one width"),
    ("cross", (Lookup("a", "a", 5, 4), Lookup("b", "b", 5, 8)), "widths [4, 8]"),
])
def test_interactions_without_lookups_to_act_on_are_one_line(setting, lookups, needle):
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")) as err:
        build_model("mmoe", InputSpec(numeric=("x",), lookups=lookups), TASKS, **{setting: True})
    assert "\n" not in str(err.value)


def test_parameter_estimate_counts_the_wide_weights_and_the_crossed_width():
    from mmoe.models.model import estimate_parameters

    for wide, cross in ((False, False), (True, False), (False, True), (True, True)):
        model = build_model("shared_bottom", _inputs(), TASKS, wide=wide, cross=cross)
        estimate = estimate_parameters(model.config, _inputs(), TASKS)
        assert estimate == sum(p.numel() for p in model.parameters())

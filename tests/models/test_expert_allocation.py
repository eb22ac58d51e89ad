"""Experts by feature (feature_mmoe) and by structure (mixed_mmoe): closed forms and
equivalences."""

import pytest
import torch

from mmoe import InputSpec, ModelConfig, TaskSpec, build_model
from mmoe.models.expert_allocation import MixedExpertBank, input_positions
from mmoe.nn import CrossExperts, FMExperts, StackedMLP

INPUTS = InputSpec(numeric=("age", "income"), categorical=(("city", 5), ("item", 4)),
                   embedding_dim=3)
TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "regression"))
GROUPS = {"user": ["age", "city"], "item": ["item"], "money": ["income", "item"]}


def _batch(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 2, generator=g), torch.randint(0, 4, (b, 2), generator=g)


def _feature_model(**options):
    torch.manual_seed(0)
    return build_model("feature_mmoe", INPUTS, TASKS, expert_units=(5,),
                       options={"feature_groups": GROUPS, **options})


def test_input_positions_map_columns_to_encoder_positions():
    assert input_positions(INPUTS) == {"age": [0], "income": [1], "city": [2, 3, 4],
                                       "item": [5, 6, 7]}


def test_feature_experts_ignore_features_outside_their_group():
    model = _feature_model(experts_per_group={"user": 2, "item": 1, "money": 1},
                           shared_experts=1).eval()
    names = model.backbone.expert_names
    assert names == ["user#0", "user#1", "item#0", "money#0", "shared#0"]
    num, cat = _batch()
    experts = lambda n, c: model.backbone.experts(model.encoder(n, c))  # noqa: E731
    base = experts(num, cat)  # (E, B, H)
    num2 = num.clone()
    num2[:, 1] += 5.0  # perturb 'income'
    cat2 = cat.clone()
    cat2[:, 1] = (cat[:, 1] + 1) % 4  # perturb 'item'
    moved = experts(num2, cat2)
    # only money#0 (income, item), item#0 (item) and the shared expert read them
    torch.testing.assert_close(moved[:2], base[:2])
    assert not torch.allclose(moved[2], base[2])
    assert not torch.allclose(moved[3], base[3])
    assert not torch.allclose(moved[4], base[4])
    num3 = num.clone()
    num3[:, 0] -= 3.0  # perturb 'age': only user experts and the shared one move
    moved = experts(num3, cat)
    torch.testing.assert_close(moved[2:4], base[2:4])
    assert not torch.allclose(moved[0], base[0])


def test_feature_experts_get_no_gradient_outside_their_group():
    model = _feature_model()
    model(*_batch()).sum().backward()
    grad = model.backbone.experts.layers[0].weight.grad  # (E, d, H)
    mask = model.backbone.experts.mask.squeeze(-1).bool()  # (E, d)
    assert (grad[~mask] == 0).all() and (grad[mask] != 0).any()


def test_feature_mmoe_with_one_group_of_everything_is_mmoe():
    everything = {"all": ["age", "income", "city", "item"]}
    torch.manual_seed(0)
    feat = build_model("feature_mmoe", INPUTS, TASKS, num_experts=3,
                       options={"feature_groups": everything, "experts_per_group": 3})
    torch.manual_seed(0)
    mmoe = build_model("mmoe", INPUTS, TASKS, num_experts=3)
    feat.load_state_dict(mmoe.state_dict())  # same parameter names and shapes
    torch.testing.assert_close(feat(*_batch()), mmoe(*_batch()))


def test_feature_mmoe_default_groups_are_numeric_and_categorical():
    torch.manual_seed(0)
    model = build_model("feature_mmoe", INPUTS, TASKS, num_experts=5)
    assert model.backbone.expert_names == ["numeric#0", "numeric#1", "numeric#2",
                                           "categorical#0", "categorical#1"]


@pytest.mark.parametrize("options, message", [
    ({"feature_groups": {"u": ["nope"]}}, "feature group 'u' names unknown input column"),
    ({"feature_groups": {"u": []}}, "feature group 'u' is empty"),
    ({"feature_groups": ["age"]}, "must map group names to lists"),
    ({"feature_groups": GROUPS, "experts_per_group": {"zzz": 1}}, "unknown group"),
    ({"experts_per_group": 0}, "experts_per_group' must be an integer >= 1"),
    ({"shared_experts": -1}, "shared_experts' must be an integer >= 0"),
    ({"colour": 1}, "unknown option"),
])
def test_feature_mmoe_option_errors_name_the_problem(options, message):
    with pytest.raises(ValueError, match=message):
        build_model("feature_mmoe", INPUTS, TASKS, options=options)


# ---- experts by structure -------------------------------------------------------------------
SPECS = [{"kind": "mlp", "units": [7], "count": 2}, {"kind": "cross", "layers": 2},
         {"kind": "mlp", "count": 1}, {"kind": "fm", "factors": 3, "count": 2},
         {"kind": "mlp", "units": [7]}]


def test_mixed_bank_groups_same_shaped_experts_and_equals_its_groups_computed_separately():
    torch.manual_seed(0)
    model = build_model("mixed_mmoe", 10, TASKS, expert_units=(4,),
                        options={"experts": SPECS})
    bank = model.backbone.experts
    assert [type(g).__name__ for g in bank.groups] == ["StackedMLP", "CrossExperts",
                                                       "StackedMLP", "FMExperts"]
    assert model.backbone.expert_names == ["mlp(7)#0", "mlp(7)#1", "mlp(7)#2", "cross(2)#0",
                                           "mlp()#0", "fm(3)#0", "fm(3)#1"]
    x = torch.randn(5, 10)
    out = bank(x)  # (E, B, H)
    assert out.shape == (7, 5, 4)
    torch.testing.assert_close(out, torch.cat([g(x) for g in bank.groups]))
    # and each stacked group equals its experts computed one at a time
    mlp = bank.groups[0]
    for e in range(3):
        h = x
        for layer in mlp.layers:
            h = torch.relu(h @ layer.weight[e] + layer.bias[e])
        torch.testing.assert_close(out[e], h)


def test_mixed_mmoe_of_one_mlp_group_is_mmoe():
    torch.manual_seed(0)
    mixed = build_model("mixed_mmoe", 10, TASKS, num_experts=4,
                        options={"experts": [{"kind": "mlp", "count": 4}]})
    torch.manual_seed(0)
    mmoe = build_model("mmoe", 10, TASKS, num_experts=4)
    x = torch.randn(6, 10)
    for a, b in zip(mixed.parameters(), mmoe.parameters(), strict=True):
        assert torch.equal(a, b)  # same init order, same draws
    torch.testing.assert_close(mixed(x), mmoe(x))


def test_cross_expert_matches_the_dcn_recursion():
    torch.manual_seed(0)
    cross = CrossExperts(2, 4, 3, 5)
    with torch.no_grad():
        cross.bias.normal_()
    x = torch.randn(6, 4)
    for e in range(2):
        xl = x
        for layer in range(3):  # x_{l+1} = x_0 (x_l . w_l) + b_l + x_l
            w, b = cross.weight[layer, e], cross.bias[layer, e]
            xl = x * (xl @ w)[:, None] + b + xl
        expected = torch.relu(xl @ cross.proj.weight[e] + cross.proj.bias[e])
        torch.testing.assert_close(cross(x)[e], expected)


def test_fm_expert_is_the_sum_of_pairwise_interactions():
    torch.manual_seed(0)
    fm = FMExperts(2, 4, 3, 5)
    x = torch.randn(6, 4)
    for e in range(2):
        v = fm.factors[e]  # (d, k)
        bi = sum(x[:, i:i + 1] * x[:, j:j + 1] * (v[i] * v[j])
                 for i in range(4) for j in range(i + 1, 4))  # sum_{i<j} x_i x_j v_i . v_j
        expected = torch.relu(bi @ fm.proj.weight[e] + fm.proj.bias[e])
        torch.testing.assert_close(fm(x)[e], expected, rtol=1e-5, atol=1e-5)


def test_mixed_bank_direct_construction():
    bank = MixedExpertBank([("mlp", (), 2), ("fm", 2, 1)], 3, 4)
    assert isinstance(bank.groups[0], StackedMLP) and bank(torch.randn(2, 3)).shape == (3, 2, 4)


@pytest.mark.parametrize("options, message", [
    ({"experts": []}, "non-empty list"),
    ({"experts": [{"kind": "rnn"}]}, "needs 'kind' one of mlp, cross, fm"),
    ({"experts": [{"kind": "fm", "layers": 2}]}, "a 'fm' expert takes count, factors"),
    ({"experts": [{"kind": "cross", "count": 0}]}, "count' must be an integer >= 1"),
    ({"out_units": 0}, "out_units' must be an integer >= 1"),
])
def test_mixed_mmoe_option_errors_name_the_problem(options, message):
    with pytest.raises(ValueError, match=message):
        build_model("mixed_mmoe", 10, TASKS, options=options)


def test_gate_options_on_a_model_without_gates_are_an_error():
    with pytest.raises(ValueError, match="'shared_bottom' has no gates"):
        build_model("shared_bottom", 10, TASKS, gate_dropout=0.1)


def test_gate_dropout_reaches_every_gate_and_gate_balance_adds_a_penalty():
    torch.manual_seed(0)
    model = build_model("ple", 10, TASKS, gate_dropout=0.2, gate_balance=0.5)
    assert {m.dropout for m in model.modules() if type(m).__name__ == "Gates"} == {0.2}
    penalty = model(torch.randn(8, 10), parts=True).aux_loss  # a training forward
    assert penalty is not None and float(penalty.detach()) >= 0 and penalty.requires_grad
    model.eval()
    assert model(torch.randn(8, 10), parts=True).aux_loss is None  # evaluation adds nothing


def test_config_round_trip_keeps_options_and_gate_fields():
    cfg = ModelConfig("feature_mmoe", options={"feature_groups": GROUPS}, gate_dropout=0.1)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg

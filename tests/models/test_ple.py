"""CGC and PLE: equivalence with MMoE, PLE(1 level) == CGC, and a loop-over-everything
reference implementation of stacked levels."""

from __future__ import annotations

import pytest
import torch

from mmoe.config import TaskSpec
from mmoe.models import build_model

TASKS2 = (TaskSpec("a", "binary"), TaskSpec("b", "regression"))
TASKS3 = (*TASKS2, TaskSpec("c", "multiclass", classes=("x", "y", "z")))


def _build(name, d, tasks, seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(name, d, tasks, **kw).eval()


def _expert(level, e, inp):
    """Expert e of a level on inp (B, I), one nn.Linear-style layer at a time."""
    for layer in level.experts.layers:
        inp = torch.relu(inp @ layer.weight[e] + layer.bias[e])
    return inp


def _gate(gates, g, inp):
    """Softmax gate g of a Gates module on inp (B, I)."""
    lin = gates.linear
    logits = inp @ lin.weight[g] + (lin.bias[g] if lin.bias is not None else 0)
    return torch.softmax(logits, -1)


def _reference(backbone, x, num_tasks, m_t, m_s):
    """PLE by the paper's equations, with Python loops over levels, tasks and experts."""
    task_in, shared_in = [x] * num_tasks, x
    for level in backbone.levels:
        # experts [task 0's m_t, ..., task T-1's m_t, shared m_s]
        outs = [_expert(level, k * m_t + i, task_in[k])
                for k in range(num_tasks) for i in range(m_t)]
        outs += [_expert(level, num_tasks * m_t + j, shared_in) for j in range(m_s)]
        full = torch.zeros(num_tasks, x.shape[0], len(outs))
        new_task = []
        for k in range(num_tasks):
            visible = [k * m_t + i for i in range(m_t)] + [num_tasks * m_t + j
                                                           for j in range(m_s)]
            w = _gate(level.task_gates, k, task_in[k])  # (B, m_t + m_s)
            new_task.append(sum(w[:, n:n + 1] * outs[e] for n, e in enumerate(visible)))
            full[k][:, visible] = w
        if level.shared_gate is not None:
            w = _gate(level.shared_gate, 0, shared_in)  # (B, E) over all experts
            shared_in = sum(w[:, e:e + 1] * outs[e] for e in range(len(outs)))
        task_in = new_task
    return torch.stack(task_in), full


def test_cgc_without_task_experts_equals_mmoe_with_same_weights():
    mmoe = _build("mmoe", 6, TASKS3, seed=1, num_experts=4, expert_units=(5, 3), gate_bias=True)
    cgc = _build("cgc", 6, TASKS3, seed=2, num_experts=4, expert_units=(5, 3), gate_bias=True,
                 options={"task_experts": 0})
    rename = {"backbone.experts.": "backbone.levels.0.experts.",
              "backbone.gates.": "backbone.levels.0.task_gates."}
    state = {}
    for key, value in mmoe.state_dict().items():
        for old, new in rename.items():
            key = key.replace(old, new)
        state[key] = value
    cgc.load_state_dict(state)  # strict: the layouts match one to one
    x = torch.randn(7, 6)
    y_m, g_m = mmoe(x, parts=True)[:2]
    y_c, g_c = cgc(x, parts=True)[:2]
    torch.testing.assert_close(y_c, y_m)
    torch.testing.assert_close(g_c, g_m)


def test_cgc_default_shared_bank_is_num_experts_and_init_matches_mmoe_under_same_seed():
    mmoe = _build("mmoe", 6, TASKS2, seed=3, num_experts=5)
    cgc = _build("cgc", 6, TASKS2, seed=3, num_experts=5, options={"task_experts": 0})
    x = torch.randn(4, 6)
    torch.testing.assert_close(cgc(x), mmoe(x))
    default = _build("cgc", 6, TASKS2, num_experts=5).backbone.levels[0]
    assert default.num_experts == 2 * 1 + 5


def test_ple_with_one_level_equals_cgc():
    opts = {"task_experts": 2, "shared_experts": 3}
    cgc = _build("cgc", 6, TASKS3, seed=1, expert_units=(4,), options=opts)
    ple = _build("ple", 6, TASKS3, seed=2, expert_units=(4,), options={**opts, "levels": 1})
    assert ple.backbone.levels[0].shared_gate is None  # the last level has no shared gate
    ple.load_state_dict(cgc.state_dict())  # strict
    x = torch.randn(5, 6)
    y_c, g_c = cgc(x, parts=True)[:2]
    y_p, g_p = ple(x, parts=True)[:2]
    torch.testing.assert_close(y_p, y_c)
    torch.testing.assert_close(g_p, g_c)


def test_cgc_gate_sees_only_own_and_shared_experts():
    cgc = _build("cgc", 5, TASKS3, expert_units=(4,),
                 options={"task_experts": 2, "shared_experts": 3})
    _, gates = cgc(torch.randn(8, 5), parts=True)[:2]
    assert gates.shape == (3, 8, 3 * 2 + 3)
    torch.testing.assert_close(gates.sum(-1), torch.ones(3, 8))
    for k in range(3):
        others = [e for e in range(6) if e // 2 != k]  # other tasks' experts
        assert torch.all(gates[k][:, others] == 0)
        assert torch.all(gates[k][:, [2 * k, 2 * k + 1, 6, 7, 8]] > 0)


@pytest.mark.parametrize("levels, m_t, m_s, units", [
    (1, 2, 3, (4,)),
    (2, 1, 2, (4, 3)),
    (3, 2, 1, (3,)),
    (2, 0, 2, (3,)),
    (2, 2, 0, (3,)),
])
def test_ple_equals_loop_reference(levels, m_t, m_s, units):
    ple = _build("ple", 5, TASKS3, expert_units=units, gate_bias=True,
                 options={"task_experts": m_t, "shared_experts": m_s, "levels": levels})
    x = torch.randn(6, 5)
    h, gates, _ = ple.backbone(x)
    with torch.no_grad():
        h_ref, gates_ref = _reference(ple.backbone, x, 3, m_t, m_s)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(gates, gates_ref)


def test_ple_shared_gates_on_all_but_last_level_and_level_inputs():
    ple = _build("ple", 9, TASKS2, expert_units=(6, 4), options={"levels": 3})
    levels = ple.backbone.levels
    assert [lv.shared_gate is not None for lv in levels] == [True, True, False]
    assert levels[0].experts.layers[0].in_features == 9
    assert levels[1].experts.layers[0].in_features == 4  # reads level 1's outputs
    assert levels[1].task_gates.linear.in_features == 4
    no_shared = _build("ple", 9, TASKS2, options={"levels": 2, "shared_experts": 0})
    assert no_shared.backbone.levels[0].shared_gate is None  # nothing would read its output


@pytest.mark.parametrize("name", ["cgc", "ple"])
@pytest.mark.parametrize("tasks", [TASKS2[:1], TASKS3])
def test_defaults_batch_of_one_and_gradients(name, tasks):
    model = _build(name, 4, tasks)
    model.train()
    y, gates = model(torch.randn(1, 4), parts=True)[:2]
    assert y.shape == (1, sum(t.out_dim for t in tasks))
    assert gates.shape[:2] == (len(tasks), 1)
    y.sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not dead


@pytest.mark.parametrize("name, options, match", [
    ("cgc", {"levels": 2}, "cgc.*unknown option.*'levels'"),
    ("cgc", {"task_experts": -1}, "cgc.*'task_experts'"),
    ("cgc", {"shared_experts": 1.5}, "cgc.*'shared_experts'"),
    ("cgc", {"task_experts": 0, "shared_experts": 0}, "cgc.*needs an expert"),
    ("ple", {"levels": 0}, "ple.*'levels'"),
    ("ple", {"experts": 2}, "ple.*unknown option.*'experts'"),
])
def test_bad_options_raise_naming_model_and_option(name, options, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, 4, TASKS2, options=options)

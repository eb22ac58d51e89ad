"""Gate health: utilisation, entropy, warnings on polarised gates and dead experts."""

import math
import warnings

import pytest
import torch

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.data.table import TensorTable
from mmoe.diagnostics import GateHealthWarning, GateUsage, gate_warnings
from mmoe.train import Trainer
from mmoe.train import gate_health_of as gate_health
from mmoe.train.evaluation import model_pass

TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "binary"))
EXPERTS = ["e0", "e1", "e2", "e3"]


def test_uniform_gates_raise_no_warning():
    assert gate_warnings(torch.full((2, 4), 0.25), None, ["a", "b"], EXPERTS) == []


def test_polarised_gate_is_named_with_its_expert():
    util = torch.tensor([[0.95, 0.02, 0.02, 0.01], [0.25, 0.25, 0.25, 0.25]])
    msgs = gate_warnings(util, None, ["a", "b"], EXPERTS)
    assert len(msgs) == 1
    assert "task 'a' is polarised" in msgs[0] and "expert 'e0'" in msgs[0]


def test_dead_expert_needs_to_be_unused_by_every_task():
    # e3 below 1/(10*4) = 0.025 for both tasks: dead; e2 used by task b: alive
    util = torch.tensor([[0.5, 0.48, 0.01, 0.01], [0.3, 0.3, 0.39, 0.01]])
    msgs = gate_warnings(util, None, ["a", "b"], EXPERTS)
    assert msgs == [m for m in msgs if "expert 'e3' is dead" in m] and len(msgs) == 1


def test_cgc_counts_only_the_experts_a_gate_can_see():
    # task a sees e0 (own) and e2 (shared), task b sees e1 and e2; zeros elsewhere are
    # structural and neither polarise nor kill anything
    util = torch.tensor([[0.5, 0.0, 0.5, 0.0], [0.0, 0.5, 0.5, 0.0]])
    mask = torch.tensor([[True, False, True, False], [False, True, True, False]])
    assert gate_warnings(util, mask, ["a", "b"], EXPERTS) == []
    # a gate of 2 visible experts putting 0.95 on one is polarised
    util2 = torch.tensor([[0.95, 0.0, 0.05, 0.0], [0.0, 0.5, 0.5, 0.0]])
    assert len(gate_warnings(util2, mask, ["a", "b"], EXPERTS)) == 1


def _table(n=50):
    return TensorTable(numeric=torch.randn(n, 3), labels=torch.randint(0, 2, (n, 2)).float())


def _polarised_mmoe():
    torch.manual_seed(0)
    model = build_model("mmoe", 3, TASKS, num_experts=4, gate_bias=True)
    with torch.no_grad():  # gates ignore x and put ~all weight on expert 1
        model.backbone.gates.linear.weight.zero_()
        model.backbone.gates.linear.bias.copy_(torch.tensor([0.0, 10.0, 0.0, 0.0]))
    return model


def test_gate_statistics_of_a_hand_made_polarised_gate():
    model = _polarised_mmoe()
    _, usage = model_pass(model, _table(), gates=True)
    util, entropy = usage.result()
    p = torch.softmax(torch.tensor([0.0, 10.0, 0.0, 0.0]), 0)
    torch.testing.assert_close(util, p.expand(2, 4))
    torch.testing.assert_close(entropy, torch.full((2,), float(-(p * p.log()).sum())))
    assert model.backbone.gate_mask is None  # every gate sees every expert


def test_gate_usage_does_not_depend_on_the_batch_size():
    model = _polarised_mmoe()
    with torch.no_grad():
        model.backbone.gates.linear.weight.normal_()  # gates that depend on the rows
    table = _table(37)
    whole = model_pass(model, table, gates=True)[1].result()
    batched = model_pass(model, table, batch_size=5, gates=True)[1].result()
    for a, b in zip(whole, batched, strict=True):
        torch.testing.assert_close(a, b)
    usage = GateUsage()
    usage.add(torch.tensor([[[0.5, 0.5]], [[1.0, 0.0]]]))  # two gates, one row
    util, entropy = usage.result()
    assert util.tolist() == [[0.5, 0.5], [1.0, 0.0]]
    torch.testing.assert_close(entropy, torch.tensor([math.log(2), 0.0]))


def test_gate_health_warns_naming_task_and_expert():
    with pytest.warns(GateHealthWarning, match="task 'a' is polarised: expert 'e1'"):
        report = gate_health(_polarised_mmoe(), _table(), warn=True)
    assert len(report["warnings"]) == 2 + 3  # two polarised gates, three dead experts
    assert set(report["utilisation"]) == {"a", "b"} and len(report["utilisation"]["a"]) == 4


def test_gate_health_on_a_uniform_gate_is_quiet():
    model = _polarised_mmoe()
    with torch.no_grad():
        model.backbone.gates.linear.bias.zero_()
    with warnings.catch_warnings():
        warnings.simplefilter("error", GateHealthWarning)
        report = gate_health(model, _table(), warn=True)
    assert report["warnings"] == []
    assert report["normalised_entropy"]["a"] == pytest.approx(1.0)
    assert report["entropy"]["a"] == pytest.approx(math.log(4))


def test_models_without_gates_have_no_gate_health():
    model = build_model("shared_bottom", 3, TASKS)
    assert gate_health(model, _table()) is None


def test_cgc_report_leaves_out_the_experts_a_gate_cannot_see():
    torch.manual_seed(0)
    model = build_model("cgc", 3, TASKS, num_experts=2)  # 1 own expert per task, 2 shared
    report = gate_health(model, _table())
    assert set(report["utilisation"]["a"]) == {"a own", "shared 0", "shared 1"}  # not "b own"
    assert sum(report["utilisation"]["b"].values()) == pytest.approx(1.0)


def test_trainer_history_records_gate_health_each_epoch():
    torch.manual_seed(0)
    model = build_model("mmoe", 3, TASKS, num_experts=3)
    result = Trainer(model, TrainConfig(epochs=2, batch_size=16), progress=False).fit(
        _table(64), _table(32))
    for record in result.history:
        util = record["gates"]["utilisation"]
        assert set(util) == {"a", "b"}
        assert sum(util["a"].values()) == pytest.approx(1.0, abs=1e-5)
        assert 0 <= record["gates"]["normalised_entropy"]["b"] <= 1 + 1e-6


def test_trainer_warns_each_gate_problem_once_and_records_it_every_epoch():
    """A problem that lasts (the polarised gates and dead experts of a model trained too
    slowly to change them) is warned about at its first epoch only, not every epoch."""
    model = _polarised_mmoe()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # Python's once-per-message filter would hide repeats
        result = Trainer(model, TrainConfig(epochs=3, batch_size=16, lr=1e-9),
                         progress=False).fit(_table(64), _table(32))
    gate_warnings_seen = [str(w.message) for w in caught if w.category is GateHealthWarning]
    assert [len(r["gates"]["warnings"]) for r in result.history] == [5, 5, 5]
    assert gate_warnings_seen == result.history[0]["gates"]["warnings"]  # 2 gates, 3 experts

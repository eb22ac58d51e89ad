import torch

from mmoe import TaskSpec, build_model

TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "regression"))


def test_mmoe_with_shared_gate_weights_equals_omoe():
    torch.manual_seed(0)
    omoe = build_model("omoe", 6, TASKS, num_experts=3, expert_units=(5,), tower_units=(4,))
    mmoe = build_model("mmoe", 6, TASKS, num_experts=3, expert_units=(5,), tower_units=(4,))
    state = omoe.state_dict()
    gate_w = state["backbone.gates.linear.weight"]  # (1, d, E)
    state["backbone.gates.linear.weight"] = gate_w.expand(2, -1, -1).clone()  # both tasks
    mmoe.load_state_dict(state)
    x = torch.randn(10, 6)
    torch.testing.assert_close(mmoe(x), omoe(x))


def test_mmoe_with_one_expert_equals_shared_bottom():
    torch.manual_seed(0)
    sb = build_model("shared_bottom", 6, TASKS, expert_units=(5, 3), tower_units=(4,))
    mmoe = build_model("mmoe", 6, TASKS, num_experts=1, expert_units=(5, 3), tower_units=(4,))
    state = {k.replace("backbone.bottom", "backbone.experts"): v
             for k, v in sb.state_dict().items()}
    state["backbone.gates.linear.weight"] = torch.randn(2, 6, 1)  # softmax over 1 expert = 1
    mmoe.load_state_dict(state)
    x = torch.randn(10, 6)
    torch.testing.assert_close(mmoe(x), sb(x))


def test_single_task_networks_do_not_share():
    torch.manual_seed(0)
    model = build_model("single_task", 4, TASKS, expert_units=(3,), tower_units=(2,))
    x = torch.randn(8, 4)
    out = model(x)
    with torch.no_grad():  # change task b's network only: task a's output must not move
        model.backbone.nets.layers[0].weight[1].add_(1.0)
    out2 = model(x)
    torch.testing.assert_close(out2[:, 0], out[:, 0])
    assert not torch.allclose(out2[:, 1], out[:, 1])

"""Funnel tasks and heads: ESMM's product, AITM's transfer and calibrator, the conditional
CVR of plain models, every model's outputs in one form, and the label checks."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mmoe import TaskSpec, build_model
from mmoe.app.spec import parse_task
from mmoe.data.encoders import TableEncoder
from mmoe.metrics import evaluate
from mmoe.models.funnel import funnel_pairs, joint_name, output_logits
from mmoe.nn.funnel import InformationTransfer, product_logit, ratio_logit
from mmoe.objectives import MultiTaskLoss

TASKS = (TaskSpec("click"), TaskSpec("buy", after="click"))
SLICES = (slice(0, 1), slice(1, 2))


def _model(name, seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(name, 6, TASKS, num_experts=3, expert_units=(8,), tower_units=(4,),
                       **kw)


def _data(b=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 6, generator=g)
    click = (torch.rand(b, generator=g) < 0.4).float()
    buy = click * (torch.rand(b, generator=g) < 0.5).float()
    return x, torch.stack([click, buy], 1)


def test_product_logit_is_the_logit_of_the_product_with_its_gradients():
    a = torch.tensor([-40.0, -3.0, 0.0, 2.5, 30.0, 120.0], dtype=torch.float64,
                     requires_grad=True)
    b = torch.tensor([1.0, -0.5, 0.0, 4.0, -60.0, 110.0], dtype=torch.float64,
                     requires_grad=True)
    y = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    z = product_logit(a, b)
    assert torch.isfinite(z).all()
    p = torch.sigmoid(a) * torch.sigmoid(b)
    torch.testing.assert_close(torch.sigmoid(z), p, rtol=1e-12, atol=1e-300)
    # BCE-with-logits on the product's logit == the cross-entropy of the product
    mid = slice(1, 4)  # where the plain formula is itself accurate
    ours = torch.autograd.grad(F.binary_cross_entropy_with_logits(z[mid], y[mid],
                                                                  reduction="sum"), (a, b))
    ref = torch.autograd.grad(F.binary_cross_entropy(p[mid], y[mid], reduction="sum"), (a, b))
    for g1, g2 in zip(ours, ref, strict=True):
        torch.testing.assert_close(g1, g2)


def test_ratio_logit_inverts_the_product_and_clips_at_one():
    a = torch.linspace(-6, 6, 13, dtype=torch.float64)
    b = torch.linspace(5, -5, 13, dtype=torch.float64)
    torch.testing.assert_close(ratio_logit(product_logit(a, b), a), b)
    above = ratio_logit(torch.tensor([2.0]), torch.tensor([1.0]))  # joint > parent
    assert torch.sigmoid(above).item() == pytest.approx(1.0, abs=1e-6)


def test_esmm_ctcvr_is_the_product_of_its_towers():
    model = _model("esmm").eval()
    x, _ = _data()
    towers = model.towers(model.backbone(model.encoder(x)).h)  # (B, 2) pCTR, pCVR logits
    out = model(x)
    torch.testing.assert_close(out[:, 0], towers[:, 0])
    torch.testing.assert_close(torch.sigmoid(out[:, 1]),
                               torch.sigmoid(towers[:, 0]) * torch.sigmoid(towers[:, 1]))
    # the outputs: pCTR, pCVR (the purchase tower itself) and pCTCVR, named
    view = model.outputs(out.detach().numpy())
    assert [t.name for t in view.tasks] == ["click", "buy", "click_and_buy"]
    np.testing.assert_allclose(view.logits[:, 1], towers[:, 1].detach().numpy(), atol=1e-5)


def test_esmm_over_mmoe_is_one_configuration():
    model = _model("esmm", options={"bottom": "mmoe"})
    reference = _model("mmoe")
    assert type(model.backbone) is type(reference.backbone)
    assert model.backbone.gated and model.funnel.kind == "esmm"
    # same bottom and towers from the same seed: the click logits agree
    x, _ = _data()
    torch.testing.assert_close(model.eval()(x)[:, 0], reference.eval()(x)[:, 0])


def test_esmm_loss_is_ctr_and_ctcvr_over_all_impressions():
    model = _model("esmm")
    x, labels = _data()
    loss = MultiTaskLoss(model.tasks, model.task_slices, joint=True)
    towers = model.towers(model.backbone(model.encoder(x)).h)
    pctr, pcvr = torch.sigmoid(towers[:, 0]), torch.sigmoid(towers[:, 1])
    expected = torch.stack([F.binary_cross_entropy(pctr, labels[:, 0]),
                            F.binary_cross_entropy(pctr * pcvr, labels[:, 1])])
    torch.testing.assert_close(loss(model(x), labels), expected)


def test_conditional_cvr_never_sees_a_purchase_label_on_an_unclicked_row():
    model = _model("shared_bottom")
    x, labels = _data()
    loss = MultiTaskLoss(model.tasks, model.task_slices)  # a plain model: conditional
    out = model(x)
    hidden = labels.clone()
    hidden[labels[:, 0] == 0, 1] = float("nan")  # the unclicked rows' purchase labels
    torch.testing.assert_close(loss(out, labels), loss(out, hidden))
    clicked = labels[:, 0] == 1
    expected = F.binary_cross_entropy_with_logits(out[clicked, 1], labels[clicked, 1])
    torch.testing.assert_close(loss(out, labels)[1], expected)


def test_aitm_with_no_attention_on_the_transfer_equals_independent_towers(monkeypatch):
    model = _model("aitm").eval()
    x, _ = _data()
    ait = model.funnel.transfers[0]
    with torch.no_grad():  # h3 = identity
        ait.value.weight.copy_(torch.eye(ait.value.weight.shape[0]))
        ait.value.bias.zero_()
    monkeypatch.setattr(InformationTransfer, "weights",
                        lambda self, u: torch.tensor([0.0, 1.0]).expand(u.shape[0], 2))
    independent = model.towers(model.backbone(model.encoder(x)).h)
    torch.testing.assert_close(model(x), independent)


def test_aitm_attention_weights_sum_to_one_and_the_transfer_changes_the_output():
    model = _model("aitm").eval()
    x, _ = _data()
    ait = model.funnel.transfers[0]
    u = torch.randn(5, 2, ait.value.weight.shape[0])
    torch.testing.assert_close(ait.weights(u).sum(1), torch.ones(5))
    h = model.backbone(model.encoder(x)).h
    assert not torch.allclose(model(x)[:, 1], model.towers(h)[:, 1])


def test_aitm_calibrator_penalises_purchase_above_click():
    model = _model("aitm", options={"calibration": 0.5}).train()
    x, _ = _data()
    out = model(x, parts=True)
    p = torch.sigmoid(out.logits)
    torch.testing.assert_close(out.aux_loss, 0.5 * torch.relu(p[:, 1] - p[:, 0]).mean())
    assert _model("aitm", options={"calibration": 0}).train()(x, parts=True).aux_loss is None
    assert model.eval()(x, parts=True).aux_loss is None  # a training term only


def test_outputs_give_conditional_and_joint_for_every_head():
    logits = torch.tensor([[0.5, -1.0], [-2.0, 0.3]], dtype=torch.float64)
    plain = torch.sigmoid(output_logits(logits, TASKS, SLICES, joint=False))
    torch.testing.assert_close(plain[:, 2], plain[:, 0] * plain[:, 1])  # joint = product
    joint = torch.sigmoid(output_logits(logits, TASKS, SLICES, joint=True))
    torch.testing.assert_close(joint[:, 2], torch.sigmoid(logits[:, 1]))  # its own joint
    # conditional: joint / earlier, clipped at 1 (row 2 predicts the joint above the click)
    torch.testing.assert_close(joint[:, 1], (joint[:, 2] / joint[:, 0]).clamp_max(1.0))


def test_evaluate_scores_the_conditional_on_clicked_rows_and_the_joint_on_all():
    model = _model("mmoe")
    x, labels = _data(200)
    view = model.outputs(model.eval()(x).detach().numpy(), labels.numpy())
    metrics = evaluate(view.tasks, view.slices, view.logits, view.labels)
    clicked = int(labels[:, 0].sum())
    assert metrics["buy"]["n"] == clicked and metrics["click_and_buy"]["n"] == 200
    from sklearn.metrics import roc_auc_score
    keep = labels[:, 0].numpy() == 1
    cvr = 1 / (1 + np.exp(-view.logits[keep, 1]))
    assert metrics["buy"]["auc"] == pytest.approx(roc_auc_score(labels[keep, 1], cvr))


def test_three_step_chains_multiply_along_the_chain():
    tasks = (TaskSpec("click"), TaskSpec("cart", after="click"), TaskSpec("buy", after="cart"))
    assert funnel_pairs(tasks) == [(1, 0), (2, 1)]
    assert joint_name(tasks, 2) == "click_and_cart_and_buy"
    logits = torch.tensor([[0.2, -0.4, 1.1]], dtype=torch.float64)
    slices = (slice(0, 1), slice(1, 2), slice(2, 3))
    p = torch.sigmoid(output_logits(logits, tasks, slices, joint=False))[0]
    q = torch.sigmoid(logits)[0]
    torch.testing.assert_close(p[3], q[0] * q[1])
    torch.testing.assert_close(p[4], q[0] * q[1] * q[2])
    torch.manual_seed(0)
    esmm = build_model("esmm", 4, tasks).eval()
    x = torch.randn(3, 4)
    towers = torch.sigmoid(esmm.towers(esmm.backbone(esmm.encoder(x)).h))
    torch.testing.assert_close(torch.sigmoid(esmm(x)[:, 2]), towers.prod(1))


@pytest.mark.parametrize("tasks, match", [
    ((TaskSpec("buy", after="click"), TaskSpec("click")), "not among the tasks before it"),
    ((TaskSpec("click", "regression"), TaskSpec("buy", after="click")), "is regression"),
    ((TaskSpec("click"), TaskSpec("click_and_buy"), TaskSpec("buy", after="click")),
     "clash"),
])
def test_bad_funnels_are_one_line(tasks, match):
    with pytest.raises(ValueError, match=match):
        build_model("mmoe", 3, tasks)


def test_funnel_heads_need_a_funnel_and_a_real_bottom():
    with pytest.raises(ValueError, match="needs a funnel"):
        build_model("esmm", 3, [TaskSpec("a"), TaskSpec("b")])
    with pytest.raises(ValueError, match="option bottom"):
        build_model("aitm", 3, TASKS, options={"bottom": "esmm"})
    with pytest.raises(ValueError, match="unknown model"):
        build_model("esmm", 3, TASKS, options={"bottom": "nope"})
    with pytest.raises(ValueError, match="after"):
        TaskSpec("spend", "regression", after="click")


def test_a_purchase_without_a_click_is_an_error_naming_the_row():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "click": [1, 0, 0, 1], "buy": [1, 0, 1, 0]})
    enc = TableEncoder(list(TASKS)).fit(df.iloc[:2])
    with pytest.raises(ValueError, match=r"'buy' follows 'click', but 1 row\(s\).* at row 2"):
        enc.transform(df)
    # the later step's label is never an input
    assert enc.fit(df.iloc[:2]).numeric == ["x"]


def test_after_on_the_command_line_and_in_a_table():
    assert parse_task("purchase:binary:after=click") == TaskSpec(
        "purchase", "binary", column="purchase", after="click")
    assert parse_task("purchase:binary:yes:after=click").positive == "yes"
    assert parse_task({"name": "buy", "after": "click"}).after == "click"

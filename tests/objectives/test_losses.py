import math

import torch

from mmoe import TaskSpec
from mmoe.objectives import MultiTaskLoss

NAN = float("nan")


def test_masked_weighted_multitask_loss_closed_form():
    tasks = [TaskSpec("b", "binary", weight=2.0), TaskSpec("r", "regression"),
             TaskSpec("c", "multiclass", classes=("p", "q"))]
    loss = MultiTaskLoss(tasks, (slice(0, 1), slice(1, 2), slice(2, 4)))
    logits = torch.tensor([[0.0, 1.0, 0.0, 0.0],
                           [0.0, 3.0, math.log(3.0), 0.0],
                           [0.0, 5.0, 0.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0, NAN],
                           [NAN, 1.0, 0.0],
                           [0.0, NAN, NAN]])
    weights = torch.tensor([1.0, 3.0, 1.0])
    per_task = loss(logits, labels, weights)
    # binary: rows 0 and 2 labelled, both logit 0 -> BCE log 2 each, weights 1 and 1
    # regression: rows 0 (err 1, w 1) and 1 (err 2, w 3): (1*1 + 3*4) / 4 = 13/4
    # multiclass: row 1 only, p(class 0) = 3/4 -> -log(3/4)
    expected = torch.tensor([math.log(2.0), 13 / 4, -math.log(0.75)])
    torch.testing.assert_close(per_task, expected)
    torch.testing.assert_close(loss.combine(per_task), 2 * expected[0] + expected[1] + expected[2])


def test_batch_without_labels_for_a_task_contributes_zero_not_nan():
    tasks = [TaskSpec("a", "binary"), TaskSpec("b", "regression")]
    loss = MultiTaskLoss(tasks, (slice(0, 1), slice(1, 2)))
    logits = torch.randn(4, 2, requires_grad=True)
    labels = torch.tensor([[1.0, NAN], [0.0, NAN], [1.0, NAN], [0.0, NAN]])
    per_task = loss(logits, labels)
    assert per_task[1].item() == 0.0 and torch.isfinite(per_task).all()
    loss.combine(per_task).backward()
    assert torch.isfinite(logits.grad).all()
    assert torch.all(logits.grad[:, 1] == 0)  # no label, no gradient


def test_zero_sample_weights_remove_rows():
    tasks = [TaskSpec("r", "regression")]
    loss = MultiTaskLoss(tasks, (slice(0, 1),))
    logits = torch.tensor([[1.0], [100.0]])
    labels = torch.tensor([[0.0], [0.0]])
    assert loss(logits, labels, torch.tensor([1.0, 0.0])).item() == 1.0


def test_single_kind_fast_path_equals_the_general_path():
    tasks = [TaskSpec("a", "binary"), TaskSpec("b", "binary")]
    loss = MultiTaskLoss(tasks, (slice(0, 1), slice(1, 2)))
    assert loss.one_kind == "binary"
    logits, labels = torch.randn(6, 2), torch.tensor([[0, 1], [1, 0], [1, 1],
                                                      [0, 0], [1, float("nan")], [0, 1]])
    w = torch.rand(6)
    fast = loss.parts(logits, labels, w)
    loss.one_kind = None  # force the per-kind index path
    slow = loss.parts(logits, labels, w)
    assert torch.allclose(fast[0], slow[0]) and torch.allclose(fast[1], slow[1])

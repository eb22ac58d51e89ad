"""Shuffle-buffer batching and the streaming trainer == the in-memory trainer."""

import torch

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.data.table import TensorTable
from mmoe.train import Trainer
from mmoe.train.epochs import StreamEpochs, epoch_permutation, shuffle_batches


def _chunks(n=103, size=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, 3)  # row id in every column
    x[:, 1:] = torch.randn(n, 2, generator=gen)
    y = (x[:, 1:2] > 0).float()
    table = TensorTable(numeric=x, labels=y)
    return table, [table.take(slice(i, i + size)) for i in range(0, n, size)]


def test_every_row_exactly_once_and_batch_sizes():
    table, chunks = _chunks()
    batches = list(shuffle_batches(chunks, batch_size=8, buffer_rows=25, seed=3, epoch=1))
    ids = torch.cat([b.numeric[:, 0] for b in batches]).long()
    assert sorted(ids.tolist()) == list(range(len(table)))
    assert all(len(b) == 8 for b in batches[:-1]) and 1 <= len(batches[-1]) <= 8
    assert ids.tolist() != list(range(len(table)))  # shuffled
    again = torch.cat([b.numeric[:, 0] for b in shuffle_batches(chunks, 8, 25, 3, 1)]).long()
    assert torch.equal(ids, again)  # deterministic in (seed, epoch)
    other = torch.cat([b.numeric[:, 0] for b in shuffle_batches(chunks, 8, 25, 3, 2)]).long()
    assert not torch.equal(ids, other)


def test_buffer_covering_the_stream_uses_the_epoch_permutation():
    table, chunks = _chunks()
    batches = list(shuffle_batches(chunks, batch_size=16, buffer_rows=1000, seed=5, epoch=2))
    ids = torch.cat([b.numeric[:, 0] for b in batches]).long()
    assert torch.equal(ids, epoch_permutation(len(table), 5, 2))


def test_stream_trainer_equals_trainer():
    table, chunks = _chunks()
    tasks = [TaskSpec("y", "binary")]
    # constant lr: a stream's cosine moves per epoch (its steps are unknown in advance)
    cfg = TrainConfig(epochs=3, batch_size=16, seed=4, lr_schedule="constant")
    torch.manual_seed(0)
    a = build_model("mmoe", 3, tasks, num_experts=2)
    torch.manual_seed(0)
    b = build_model("mmoe", 3, tasks, num_experts=2)
    ra = Trainer(a, cfg, progress=False).fit(table, table)
    rb = Trainer(b, cfg, progress=False).fit(
        StreamEpochs(lambda e: shuffle_batches(chunks, 16, 10_000, cfg.seed, e)), table)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), k
    assert [r["train_loss"] for r in ra.history] == [r["train_loss"] for r in rb.history]
    assert ra.best_epoch == rb.best_epoch


def test_stream_trainer_uses_the_thread_rule_and_restores_the_callers_setting():
    table, chunks = _chunks()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        model = build_model("mmoe", 3, [TaskSpec("y", "binary")], num_experts=2)
        trainer = Trainer(model, TrainConfig(epochs=1, batch_size=16), progress=False)
        seen = []
        trainer.optimizer.register_step_post_hook(lambda *a: seen.append(torch.get_num_threads()))
        trainer.fit(StreamEpochs(lambda e: shuffle_batches(chunks, 16, 100, 0, e)))
        assert set(seen) == {1}  # a small model: one thread, as in the in-memory loop
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

"""Training from a stream of encoded chunks with a shuffle buffer: memory is bounded by the
buffer, not by the file.

The buffer fills with chunks until it holds ``buffer_rows`` rows, is shuffled, and yields
whole batches; the leftover rows (fewer than a batch) stay for the next fill. Block 0 of
epoch e is shuffled with exactly the in-memory trainer's ``epoch_permutation(n, seed, e)``,
so when the buffer covers the whole file the batches -- and the trained weights -- equal
:class:`~mmoe.train.loop.Trainer`'s on the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import torch

from .. import _checks
from ..data.table import TensorTable
from .loop import FitResult, Trainer, epoch_permutation


def _cat(tables: list[TensorTable]) -> TensorTable:
    if len(tables) == 1:
        return tables[0]
    cols = {}
    for key in ("numeric", "categorical", "labels", "weights"):
        parts = [getattr(t, key) for t in tables]
        cols[key] = None if parts[0] is None else torch.cat(parts)
    return TensorTable(**cols)


def shuffle_batches(chunks: Iterable[TensorTable], batch_size: int, buffer_rows: int,
                    seed: int, epoch: int) -> Iterator[TensorTable]:
    """Batches of ``batch_size`` rows drawn through a shuffle buffer of ``buffer_rows`` rows.

    Args:
        chunks: encoded chunks in file order.
        batch_size: rows per batch (the last batch of the stream may be smaller).
        buffer_rows: rows gathered before each shuffle (the memory bound).
        seed: the training seed.
        epoch: 0-based epoch; with the seed it fixes every shuffle.

    Example:
        >>> chunks = [TensorTable.from_arrays(torch.randn(5, 2)) for _ in range(4)]
        >>> [len(b) for b in shuffle_batches(chunks, 8, 10, seed=0, epoch=0)]
        [8, 8, 4]
    """
    _checks.positive_int(batch_size, "batch_size")
    _checks.positive_int(buffer_rows, "buffer_rows")
    buffer: list[TensorTable] = []
    rows, block = 0, 0

    def drain(final: bool) -> Iterator[TensorTable]:
        nonlocal buffer, rows, block
        table = _cat(buffer)
        n = len(table)
        if block == 0:
            perm = epoch_permutation(n, seed, epoch)  # == the in-memory trainer's order
        else:
            gen = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 7919 + block)
            perm = torch.randperm(n, generator=gen)
        block += 1
        table = table.take(perm)
        full = n if final else n - n % batch_size
        for start in range(0, full, batch_size):
            yield table.take(slice(start, min(start + batch_size, full)))
        buffer = [] if full == n else [table.take(slice(full, n))]
        rows = n - full

    for chunk in chunks:
        if len(chunk) == 0:
            continue
        buffer.append(chunk)
        rows += len(chunk)
        if rows >= buffer_rows:
            yield from drain(final=False)
    if rows:
        yield from drain(final=True)


class StreamTrainer(Trainer):
    """A :class:`Trainer` whose epochs read batches from a stream instead of a table.

    Checkpoints, early stopping, best-weight restore and resume (at epoch boundaries) work as
    in the in-memory trainer; ``checkpoint_every`` (mid-epoch checkpoints) is not supported.
    """

    def fit_stream(self, epoch_batches: Callable[[int], Iterable[TensorTable]],
                   valid: TensorTable | None = None, resume: bool = False) -> FitResult:
        """Train for ``config.epochs`` epochs.

        Args:
            epoch_batches: ``epoch -> batches`` (e.g. :func:`shuffle_batches` over a file's
                encoded chunks).
            valid: labelled validation rows held in memory.
            resume: continue from the checkpoint file when it exists.
        """
        cfg = self.config
        _checks.check(self.ctx.world == 1 and self.ctx.device.type == "cpu",
                      "streaming training runs in one CPU process; drop --stream for "
                      "distributed or GPU training")
        _checks.check(cfg.checkpoint_every is None,
                      "streaming training checkpoints at epoch ends only; unset checkpoint_every")
        if not (resume and self.restore()):
            torch.manual_seed(cfg.seed)
        st = self.state
        caller_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads())  # the in-memory loop's rule
        try:
            while st["epoch"] < cfg.epochs and not st["stopped_early"]:
                rows, seconds = self._stream_epoch(epoch_batches(st["epoch"]))
                _checks.check(rows > 0, "the training stream has no rows")
                self._end_epoch(valid, rows, seconds)
        finally:
            torch.set_num_threads(caller_threads)  # training's choice stays inside training
        if cfg.restore_best and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        return self.result()

    def _stream_epoch(self, batches: Iterable[TensorTable]) -> tuple[int, float]:
        """One pass over the stream (the same step as the in-memory loop)."""
        st, model = self.state, self.model
        loss_sum = torch.zeros(len(model.tasks), dtype=torch.float64)
        model.train()
        start, done = time.perf_counter(), 0
        for batch in batches:
            if model.config.batch_norm and len(batch) == 1:
                continue  # batch norm cannot train on one row (as in the in-memory loop)
            task_losses = self._step(batch)  # the in-memory loop's step
            if task_losses is not None:
                loss_sum += task_losses * len(batch)
                st["rows"] += len(batch)
                done += len(batch)
            st["global_step"] += 1
        st["loss_sum"] = loss_sum.tolist()
        return done, time.perf_counter() - start

"""Epoch sources: where a :class:`~mmoe.train.Trainer`'s batches come from.

- :class:`InMemoryEpochs`: a table held as column tensors; epoch e visits its rows in the
  order ``epoch_permutation(n, seed, e)``, each batch a gather of its rows of that order
  (under data parallelism each rank takes its contiguous share of every batch).
- :class:`StreamEpochs`: batches read from a file through a shuffle buffer
  (:func:`shuffle_batches`), so memory is bounded by the buffer, not by the file.

Both yield :class:`Batch` es; the Trainer's loop, checkpoints, validation and early stopping
are the same for both. When the shuffle buffer covers the whole file, a stream's batches (and
so the trained weights) equal the in-memory source's on the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, Protocol

import torch

from .. import _checks
from ..data.table import TensorTable
from .distributed import DistContext, shard


class Batch(NamedTuple):
    """One training step's rows.

    Attributes:
        table: this process's rows of the batch.
        rows: the rows of the whole batch over all processes (the loss bookkeeping's weight).
    """

    table: TensorTable
    rows: int


class EpochSource(Protocol):
    """What the Trainer trains on."""

    #: steps per epoch, or ``None`` when unknown in advance (a stream)
    steps: int | None
    #: training rows per epoch, or ``None`` when unknown in advance (a CSV stream); the
    #: run's defaults that depend on the table's size are chosen from it
    rows: int | None
    #: whether training may checkpoint (and resume) in the middle of an epoch
    resumable_mid_epoch: bool
    #: whether every process of a data-parallel run can take its share of each batch
    distributable: bool

    def batches(self, epoch: int, start: int, ctx: DistContext) -> Iterator[Batch]:
        """Epoch ``epoch``'s batches from step ``start`` on (0-based)."""
        ...


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The row order of one epoch: a pure function of (seed, epoch), so resume can rebuild it.

    Example:
        >>> torch.equal(epoch_permutation(10, 0, 3), epoch_permutation(10, 0, 3))
        True
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


class InMemoryEpochs:
    """Batches of a labelled table in memory.

    Args:
        table: the training rows, with labels.
        batch_size: rows per step (over all processes).
        seed: fixes every epoch's order (:func:`epoch_permutation`).
        drop_single_row: drop a last batch of exactly one row (batch norm cannot train on
            it); that row is then skipped in that epoch.

    Example:
        >>> t = TensorTable.from_arrays(torch.randn(10, 2), torch.zeros(10))
        >>> [b.rows for b in InMemoryEpochs(t, 4, seed=0).batches(0, 0, DistContext())]
        [4, 4, 2]
    """

    resumable_mid_epoch = True
    distributable = True

    def __init__(self, table: TensorTable, batch_size: int, seed: int,
                 drop_single_row: bool = False):
        _checks.check(table.labels is not None, "training data needs labels")
        _checks.check(len(table) > 0, "the training data has no rows")
        self.table, self.batch_size, self.seed = table, batch_size, seed
        self.rows = n = len(table)
        self.steps = math.ceil(n / batch_size)
        if drop_single_row and n > 1 and n % batch_size == 1:
            self.steps -= 1  # a last batch of one row: dropped

    def batches(self, epoch: int, start: int, ctx: DistContext) -> Iterator[Batch]:
        n, bs = len(self.table), self.batch_size
        # Each batch gathers its rows of the epoch's permutation: no shuffled copy of the
        # whole table.
        order = epoch_permutation(n, self.seed, epoch)
        for b in range(start, self.steps):
            stop = min((b + 1) * bs, n)
            yield Batch(self.table.take(order[shard(b * bs, stop, ctx)]), stop - b * bs)


class StreamEpochs:
    """Batches from a stream, re-read every epoch.

    Args:
        epoch_batches: ``epoch -> batches`` (e.g. :func:`shuffle_batches` over a file's encoded
            chunks).
        skip_single_rows: skip batches of one row (batch norm cannot train on them).
        steps: the batches of an epoch when known in advance (a Parquet file's rows are):
            the learning-rate schedule then moves by step, as in memory; ``None``: by epoch.
        rows: the rows of an epoch when known in advance (a Parquet file's).

    Example:
        >>> chunks = [TensorTable.from_arrays(torch.randn(5, 2), torch.zeros(5))] * 2
        >>> source = StreamEpochs(lambda e: shuffle_batches(chunks, 4, 8, seed=0, epoch=e))
        >>> [b.rows for b in source.batches(0, 0, DistContext())]
        [4, 4, 2]
    """

    steps = None
    rows = None
    resumable_mid_epoch = False
    distributable = False

    def __init__(self, epoch_batches: Callable[[int], Iterable[TensorTable]],
                 skip_single_rows: bool = False, steps: int | None = None,
                 rows: int | None = None):
        self.epoch_batches, self.skip_single_rows = epoch_batches, skip_single_rows
        self.steps, self.rows = steps, rows

    def batches(self, epoch: int, start: int, ctx: DistContext) -> Iterator[Batch]:
        _checks.check(start == 0, "a stream resumes at epoch boundaries only")
        rows = 0
        for table in self.epoch_batches(epoch):
            if self.skip_single_rows and len(table) == 1:
                continue
            rows += len(table)
            yield Batch(table, len(table))
        _checks.check(rows > 0, "the training stream has no rows")


def _cat(tables: list[TensorTable]) -> TensorTable:
    if len(tables) == 1:
        return tables[0]
    cols = {}
    for key in ("numeric", "categorical", "labels", "weights", "ids", "groups"):
        parts = [getattr(t, key) for t in tables]
        cols[key] = None if parts[0] is None else torch.cat(parts)
    return TensorTable(**cols)


def shuffle_batches(chunks: Iterable[TensorTable], batch_size: int, buffer_rows: int,
                    seed: int, epoch: int) -> Iterator[TensorTable]:
    """Batches of ``batch_size`` rows drawn through a shuffle buffer of ``buffer_rows`` rows.

    The buffer fills with chunks until it holds ``buffer_rows`` rows, is shuffled, and yields
    whole batches; the leftover rows (fewer than a batch) stay for the next fill. Block 0 of
    epoch e is shuffled with exactly :func:`epoch_permutation` (n, seed, e), so a buffer that
    covers the whole file gives :class:`InMemoryEpochs`' batches.

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
            perm = epoch_permutation(n, seed, epoch)  # == the in-memory source's order
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

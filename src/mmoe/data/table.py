"""TensorTable: a data set held as column tensors; a batch is an index into them. RowError:
a bad value at one row of a table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import _checks, ops


class RowError(ValueError):
    """A user error about the value at one row: ``"<head> at row <row><tail>"``.

    Attributes:
        row: the frame's index label at that row (frames from :mod:`mmoe.data.readers`: the
            row's position in its file).

    Example:
        >>> err = RowError("column 'x': bad value 'a'", 5, "; fix it")
        >>> str(err)
        "column 'x': bad value 'a' at row 5; fix it"
        >>> err.located("line 7")
        "column 'x': bad value 'a' at line 7; fix it"
    """

    def __init__(self, head: str, row: Any, tail: str = ""):
        super().__init__(f"{head} at row {row}{tail}")
        self.head, self.row, self.tail = head, row, tail

    def located(self, where: str) -> str:
        """The message with ``where`` (e.g. ``"line 7"``) in place of ``"row N"``."""
        return f"{self.head} at {where}{self.tail}"


@dataclass(frozen=True)
class TensorTable:
    """Encoded rows as whole-column tensors (no per-sample objects).

    Attributes:
        numeric: (N, n_num) float32, or ``None``.
        categorical: (N, n_cat) int64 codes (0 = out-of-vocabulary / missing), or ``None``.
        labels: (N, T) float32, NaN where a task's label is missing, or ``None`` (prediction).
            Binary: 0/1; regression: the value; multiclass: the class index.
        weights: (N,) float32 per-row sample weights, or ``None`` (all ones).
        ids: (N, S) int64 table ids of the lookup columns side by side (hashed ids, sequences;
            0 = padding), or ``None``.
        groups: (N,) int64 group of each row (e.g. its user) for per-group metrics, or
            ``None``.

    Example:
        >>> t = TensorTable.from_arrays(torch.randn(10, 3), torch.zeros(10, 2))
        >>> len(t), len(t.take(torch.arange(4)))
        (10, 4)
    """

    numeric: torch.Tensor | None = None
    categorical: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    ids: torch.Tensor | None = None
    groups: torch.Tensor | None = None

    def __post_init__(self) -> None:
        sizes = {name: t.shape[0] for name, t in self._columns().items()}
        _checks.check(bool(sizes), "a table needs numeric, categorical or id inputs")
        _checks.check(len(set(sizes.values())) == 1, f"column tensors differ in length: {sizes}")

    def _columns(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in (("numeric", self.numeric), ("categorical", self.categorical),
                                  ("labels", self.labels), ("weights", self.weights),
                                  ("ids", self.ids), ("groups", self.groups))
                if v is not None}

    @classmethod
    def from_arrays(cls, x, y=None, weights=None) -> TensorTable:
        """A dense table from array-likes: x (N, d), y (N, T) or (N,), weights (N,)."""
        x = torch.as_tensor(x, dtype=torch.float32)
        _checks.check(x.dim() == 2, f"x must be 2-D (rows, features), got shape {tuple(x.shape)}")
        _checks.check(x.shape[0] > 0, "the data has no rows")
        if y is not None:
            y = torch.as_tensor(y, dtype=torch.float32)
            y = y.unsqueeze(1) if y.dim() == 1 else y
        if weights is not None:
            weights = torch.as_tensor(weights, dtype=torch.float32)
        return cls(numeric=x, labels=y, weights=weights)

    def __len__(self) -> int:
        return next(iter(self._columns().values())).shape[0]

    @property
    def device(self) -> torch.device:
        """Where the columns are."""
        return next(iter(self._columns().values())).device

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TensorTable:
        """Every column on ``device`` (the table itself when it is there already).

        Example:
            >>> TensorTable.from_arrays(torch.randn(2, 3)).to("cpu").device.type
            'cpu'
        """
        device = torch.device(device)
        if self.device == device:
            return self
        return TensorTable(**{k: v.to(device, non_blocking=non_blocking)
                              for k, v in self._columns().items()})

    @property
    def nbytes(self) -> int:
        """Bytes of all its columns."""
        return sum(c.numel() * c.element_size() for c in self._columns().values())

    def pin_memory(self) -> TensorTable:
        """The columns in page-locked host memory, for asynchronous copies to a GPU."""
        return TensorTable(**{k: v.pin_memory() for k, v in self._columns().items()})

    def take(self, index: torch.Tensor | slice) -> TensorTable:
        """The rows at ``index`` (a LongTensor or a slice), every column at once."""
        if isinstance(index, slice):
            return TensorTable(**{k: v[index] for k, v in self._columns().items()})
        columns = self._columns()
        index = index.to(next(iter(columns.values())).device)  # a CPU index, a GPU table
        rows = ops.take_rows(list(columns.values()), index)  # one pass over every column
        return TensorTable(**dict(zip(columns, rows, strict=True)))

    def inputs(self) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """The model's positional inputs ``(numeric, categorical, ids)``."""
        return self.numeric, self.categorical, self.ids

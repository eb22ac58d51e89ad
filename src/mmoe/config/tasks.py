"""What a task is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import _checks
from ._fields import TASK_KINDS, TaskKind, _number, _scalar, _Serializable, _text


@dataclass(frozen=True)
class TaskSpec(_Serializable):
    """One prediction task.

    Args:
        name: task name used in outputs, logs and files.
        kind: ``binary`` (BCE on one logit), ``regression`` (MSE on one output) or
            ``multiclass`` (cross-entropy over ``len(classes)`` logits).
        column: label column in the data (defaults to ``name``).
        classes: multiclass: the class labels, in logit order (empty: learnt from the
            training data by the encoder). Binary: ``(negative, positive)``, set by the encoder.
        positive: binary: the label value counted as the positive class (else 1/true).
        weight: the task's weight in the summed loss.
        after: binary: the task this one follows in a funnel (``purchase`` after ``click``):
            its label may be 1 only where the earlier task's is, so it is the joint event
            (clicked and purchased). Models without a funnel head learn it as the
            conditional P(purchase | click) on the earlier task's positive rows; ``esmm``
            and ``aitm`` learn the joint on every row. Outputs give both.

    Example:
        >>> TaskSpec("income", "binary", column="income_50k", positive="50000+.").out_dim
        1
    """

    name: str
    kind: TaskKind = "binary"
    column: str | None = None
    classes: tuple[Any, ...] = ()
    positive: Any = None
    weight: float = 1.0
    after: str | None = None

    def __post_init__(self) -> None:
        _checks.check(isinstance(self.name, str) and self.name != "" and self.name.isprintable(),
                      f"task name must be a non-empty printable string, got {self.name!r}")
        where = f"task '{self.name}'"
        _checks.check(isinstance(self.kind, str), f"{where}: kind must be one of "
                      f"{', '.join(TASK_KINDS)}; got {self.kind!r}")
        _checks.one_of(self.kind, TASK_KINDS, f"{where}: kind")
        if self.column is None:
            object.__setattr__(self, "column", self.name)
        _text(self.column, f"{where}: column")
        _checks.check(isinstance(self.classes, list | tuple)
                      and all(_scalar(c) for c in self.classes),
                      f"{where}: classes must be a list of strings or numbers, got "
                      f"{self.classes!r}")
        object.__setattr__(self, "classes", tuple(self.classes))
        _checks.check(self.positive is None or _scalar(self.positive),
                      f"{where}: positive must be a string or a number, got {self.positive!r}")
        _number(self.weight, f"{where}: weight")
        _checks.check(self.after is None or (isinstance(self.after, str) and self.after
                                             and self.after != self.name),
                      f"{where}: after must name another task, got {self.after!r}")
        _checks.check(self.after is None or self.kind == "binary",
                      f"{where}: only a binary task can follow another (after={self.after!r}), "
                      f"not a {self.kind} one")
        if self.kind == "multiclass" and self.classes:  # empty: learnt from the training data
            _checks.check(len(set(self.classes)) == len(self.classes) >= 2,
                          f"task '{self.name}': a multiclass task needs at least 2 distinct "
                          f"classes, got {list(self.classes)}")

    @property
    def out_dim(self) -> int:
        """Number of logits the task's tower produces."""
        if self.kind != "multiclass":
            return 1
        _checks.check(bool(self.classes), f"task '{self.name}': multiclass classes are not known "
                      "yet; fit an encoder on the training data or pass classes=(...)")
        return len(self.classes)

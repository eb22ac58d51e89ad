"""MultiTaskModel: encoder -> backbone -> towers, for every registered model."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .. import _checks
from ..config import InputSpec, ModelConfig, TaskSpec
from ..config.inputs import (
    PERIODIC_DIM,
    PERIODIC_FREQUENCIES,
    PERIODIC_SIGMA,
    cross_pairs,
    cross_width,
)
from ..nn import (
    FeatureEncoder,
    PeriodicEmbedding,
    StackedMLP,
    Towers,
    WideTerms,
    load_balance,
)
from ..nn.encoder import TABLE_INIT_STD
from .funnel import FunnelHead, OutputView, joint_name, output_view, split_head
from .protocol import BackboneOut, LinearInputBackbone
from .registry import get_entry, mlp_parameters

CHECKED_BYTES = 64 << 20  # smaller models are built without reading the memory available


class ModelOutput(NamedTuple):
    """What ``model(..., parts=True)`` returns.

    Attributes:
        logits: (B, O) every task's logits side by side.
        gates: (G, B, E) gate weights, or ``None`` for a model without gates.
        aux_loss: the model's own term of the training objective (the backbone's auxiliary
            loss plus ``gate_balance`` times the gates' load-balancing penalty), or ``None``.
    """

    logits: torch.Tensor
    gates: torch.Tensor | None
    aux_loss: torch.Tensor | None


class MultiTaskModel(nn.Module):
    """A multi-task model: ``features --encoder--> x --backbone--> h --towers--> logits``.

    Args:
        config: the model's shape; ``config.name`` picks the backbone from the registry.
        inputs: the input columns (sizes only).
        tasks: the tasks; their order is the task axis of every output.

    Shapes:
        numeric (B, n_num) float, categorical (B, n_cat) long (or ``None``)
        -> logits (B, O), O = sum of the tasks' ``out_dim`` (= T without multiclass tasks).
        Task t's logits are ``logits[:, model.task_slices[t]]``. No sigmoid/softmax inside.
        With ``parts=True`` the forward returns a :class:`ModelOutput` (logits, gates and the
        auxiliary loss) instead.

    Example:
        >>> m = MultiTaskModel(ModelConfig("mmoe"), InputSpec.dense(10),
        ...                    (TaskSpec("a", "binary"), TaskSpec("b", "regression")))
        >>> m(torch.randn(4, 10)).shape
        torch.Size([4, 2])
    """

    def __init__(self, config: ModelConfig, inputs: InputSpec, tasks: Sequence[TaskSpec]):
        tasks = tuple(tasks)
        if config.dropout is None or config.gate_dropout is None:  # rows unknown here: none
            config = config.for_rows(None, gated=False)
        _checks.check(len(tasks) >= 1, "a model needs at least one task")
        names = [t.name for t in tasks]
        _checks.check(len(set(names)) == len(names), f"task names must be unique, got {names}")
        entry = get_entry(config.name)
        _check_interactions(config, inputs)
        check_memory(config, inputs, tasks)  # before anything is allocated
        super().__init__()
        self.config, self.inputs, self.tasks = config, inputs, tasks
        self.periodic = PeriodicEmbedding(
            len(inputs.numeric), tuple(inputs.numeric.index(c) for c in inputs.periodic),
            PERIODIC_FREQUENCIES, PERIODIC_DIM, PERIODIC_SIGMA) if inputs.periodic else None
        self.encoder = FeatureEncoder(inputs.numeric_width,
                                      tuple(c for _, c in inputs.categorical),
                                      inputs.embedding_dim, inputs.lookups,
                                      cross_pairs([lk.dim for lk in inputs.lookups])
                                      if config.cross else ())
        width = self.encoder.out_features
        self.norm = nn.BatchNorm1d(width) if config.batch_norm else nn.Identity()
        extra = {"inputs": inputs} if entry.takes_inputs else {}
        self.backbone = entry.build(config, width, len(tasks), **extra)
        _checks.check(self.backbone.gated or (config.gate_dropout == 0
                                              and config.gate_balance == 0),
                      f"model '{config.name}' has no gates; gate_dropout and gate_balance apply "
                      "only to gated models (omoe, mmoe, cgc, ple, ...)")
        # the first layer may be folded into the embedding lookups (same values) when the
        # backbone starts with linear layers of x and no batch norm sits between
        self.folds_first_layer = (isinstance(self.backbone, LinearInputBackbone)
                                  and isinstance(self.norm, nn.Identity))
        self.towers = Towers(len(tasks), self.backbone.out_features, config.tower_units,
                             tuple(t.out_dim for t in tasks), config.dropout)
        if config.hidden_norm:
            self._add_hidden_norm()
        head, _, calibration = split_head(config)
        self.funnel = FunnelHead(head, tasks, self.towers.slices, self.backbone.out_features,
                                 calibration)
        # last, so that the other parameters draw the same initial values with or without
        self.wide = WideTerms([t.shape[0] for t in self.encoder.tables], self.encoder.lookups,
                              self.towers.slices[-1].stop) if config.wide else None
        clash = {joint_name(tasks, t) for t, _ in self.funnel.pairs} & set(names)
        _checks.check(not clash, f"task name(s) {sorted(clash)} clash with the funnel's joint "
                      "outputs (<earlier>_and_<later>); rename the task")

    def _add_hidden_norm(self) -> None:
        """``ModelConfig.hidden_norm``: batch norm in every hidden layer of the backbone's and
        the towers' MLPs (:meth:`mmoe.nn.StackedMLP.add_batch_norm`), and the categorical
        embeddings scaled to the lookup tables' start, N(0, TABLE_INIT_STD²) (the same draws).
        Behind a normalised layer an input's scale no longer reaches the output, only its
        size relative to its Adam steps, so a small start learns faster; without the norm a
        small start starves the first layer (measured on the generated funnel,
        docs/recsys.md)."""
        mlps = [m for m in self.backbone.modules() if isinstance(m, StackedMLP)]
        _checks.check(mlps, f"model '{self.config.name}' has no MLP layers that batch norm "
                      "applies to; drop hidden_norm")
        for mlp in mlps + [m for m in self.towers.modules() if isinstance(m, StackedMLP)]:
            mlp.add_batch_norm()
        if self.encoder.embedding is not None:
            with torch.no_grad():
                self.encoder.embedding.weight.mul_(TABLE_INIT_STD)

    @property
    def task_slices(self) -> tuple[slice, ...]:
        """Column slice of each task's logits in the (B, O) output."""
        return self.towers.slices

    def forward(self, numeric: torch.Tensor | None, categorical: torch.Tensor | None = None,
                ids: torch.Tensor | None = None, *, parts: bool = False
                ) -> torch.Tensor | ModelOutput:
        out = self._backbone(numeric, categorical, ids)  # h (T, B, k), gates (G, B, E) | None
        logits = self.towers(self.funnel.transfer(out.h))  # (B, O)
        if self.wide is not None:
            logits = logits + self.wide(ids)  # Wide & Deep: the ids' own biases
        logits = self.funnel.combine(logits)
        if not parts:
            return logits
        terms = [out.aux_loss]
        if self.training and self.config.gate_balance > 0:
            terms.append(self.config.gate_balance
                         * load_balance(out.gates, self.backbone.gate_mask))
        if self.training:
            terms.append(self.funnel.penalty(logits))
        terms = [term for term in terms if term is not None]
        return ModelOutput(logits, out.gates, sum(terms[1:], terms[0]) if terms else None)

    def outputs(self, logits: Any, labels: Any = None) -> OutputView:
        """Every task's predictions in one form whatever the funnel head (arrays): a later
        funnel task as its conditional probability and its joint ``<earlier>_and_<later>``
        (:func:`mmoe.models.funnel.output_view`); without funnel tasks, as they are."""
        return output_view(self.tasks, self.task_slices, logits, labels, self.funnel.joint)

    def _backbone(self, numeric: torch.Tensor | None, categorical: torch.Tensor | None,
                  ids: torch.Tensor | None) -> BackboneOut:
        """The backbone on x = norm(encoder(inputs)); while training a backbone that starts
        with linear layers, those are folded into the embedding lookups when that is cheaper
        (same values; evaluation and export stay plain). Periodic columns are embedded
        first."""
        if self.periodic is not None and numeric is not None:
            numeric = self.periodic(numeric)  # (B, n) -> (B, n - p + p·d)
        if (self.training and self.folds_first_layer and categorical is not None
                and self.encoder.folds(categorical.shape[0])):
            layers = self.backbone.input_layers()
            first = self.encoder.fold_linear(numeric, categorical,
                                             [layer.weight for layer in layers],
                                             [layer.bias for layer in layers])
            return self.backbone.from_inputs(first)
        return self.backbone(self.norm(self.encoder(numeric, categorical, ids)))  # x (B, d)

    def shared_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters every task reads: periodic embeddings, encoder, input
        normalisation and backbone (the towers are each task's own)."""
        parts = [m for m in (self.periodic, self.encoder, self.norm, self.backbone)
                 if m is not None]
        return [p for part in parts for p in part.parameters() if p.requires_grad]

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The lookup tables: their gradients are sparse (the rows a batch used), so they need
        an optimizer that takes sparse gradients (the Trainer's row-wise Adagrad or lazy Adam), with
        the wide part's weights when the model has one."""
        wide = list(self.wide.tables) if self.wide is not None else []
        return self.encoder.sparse_parameters() + wide

    def last_shared_layer(self) -> list[nn.Parameter]:
        """The backbone's last shared layer (GradNorm's W), as the backbone declares it."""
        return self.backbone.last_shared_layer()

    def describe(self) -> dict[str, Any]:
        """JSON description sufficient to rebuild the model (see :func:`model_from_description`)."""
        return {"config": self.config.to_dict(), "inputs": self.inputs.to_dict(),
                "tasks": [t.to_dict() for t in self.tasks]}


def compiled(net: nn.Module) -> nn.Module:
    """``torch.compile(net)``, or ``net`` itself (with a warning) where inductor has no C++
    compiler to build its CPU kernels.

    Args:
        net: the module to train.

    Returns:
        The compiled module (same parameters), or ``net``.

    Example:
        >>> net = torch.nn.Linear(2, 1)
        >>> compiled(net)(torch.zeros(3, 2)).shape
        torch.Size([3, 1])
    """
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        warnings.warn("compile=True but no C++ compiler (g++, c++ or clang++) was found; "
                      "training runs eagerly", RuntimeWarning, stacklevel=3)
        return net
    return torch.compile(net, dynamic=False)


def _check_interactions(config: ModelConfig, inputs: InputSpec) -> None:
    """``wide`` needs lookup columns; ``cross`` two of one width."""
    hint = "(hashed ids, sequences: --feature COLUMN:hashed)"
    _checks.check(not config.wide or inputs.lookups,
                  f"wide applies to lookup columns {hint}; this input has none: declare one or "
                  "set wide = false")
    widths = [lk.dim for lk in inputs.lookups]
    _checks.check(not config.cross or cross_pairs(widths),
                  f"cross multiplies two lookup columns of one width {hint}; this input has "
                  f"{len(widths)} (widths {widths}): give two the same embedding_dim or set "
                  "cross = false")


def estimate_parameters(config: ModelConfig, inputs: InputSpec,
                        tasks: Sequence[TaskSpec]) -> int:
    """A lower bound of the parameter count of ``MultiTaskModel(config, inputs, tasks)``, from
    arithmetic alone (nothing is allocated; no loop over experts or columns).

    Args:
        config: the model's shape.
        inputs: the input columns (sizes).
        tasks: the tasks.

    Returns:
        Parameters of the embeddings, the backbone (the registry's ``size``) and the towers.

    Example:
        >>> tasks = [TaskSpec("a"), TaskSpec("b")]
        >>> estimate_parameters(ModelConfig("mmoe", num_experts=4), InputSpec.dense(10), tasks)
        1074
    """
    d = inputs.width + (cross_width([lk.dim for lk in inputs.lookups]) if config.cross else 0)
    embeddings = sum(c for _, c in inputs.categorical) * inputs.embedding_dim
    backbone, k = get_entry(config.name).size(config, d, len(tasks))
    widest = max(t.out_dim if t.kind != "multiclass" or t.classes else 2 for t in tasks)
    last = config.tower_units[-1] if config.tower_units else k
    towers = mlp_parameters(k, config.tower_units, len(tasks)) + len(tasks) * (last + 1) * widest
    return (embeddings + _lookup_parameters(config, inputs, tasks) + backbone + towers
            + (2 * d if config.batch_norm else 0))


def _lookup_parameters(config: ModelConfig, inputs: InputSpec,
                       tasks: Sequence[TaskSpec]) -> int:
    """The lookup tables' share of :func:`estimate_parameters`: their cells, and their wide
    weights (at least one per row and task) with ``config.wide``."""
    tables = {lk.table: (lk.rows, lk.dim) for lk in inputs.lookups}.values()
    wide = len(tasks) if config.wide else 0
    return sum(rows * (dim + wide) for rows, dim in tables)


def available_memory() -> int | None:
    """Bytes of memory this process can still allocate.

    Returns:
        The system's available memory and free swap, capped by a cgroup (container) limit;
        ``None`` where it cannot be read.

    Example:
        >>> available_memory() is None or available_memory() > 0
        True
    """
    free = None
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text()
                    .splitlines() if ":" in line)
        free = sum(int(info[k].split()[0]) * 1024 for k in ("MemAvailable", "SwapFree")
                   if k in info)
    except (OSError, ValueError):
        try:
            free = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            return None
    try:  # cgroup v2: the container's limit minus what it uses
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            free = min(free, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return free


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "bytes" else f"{n} bytes"
        n /= 1024
    return f"{n} bytes"


def check_memory(config: ModelConfig, inputs: InputSpec, tasks: Sequence[TaskSpec],
                 copies: float = 1, what: str = "", table_copies: float | None = None) -> None:
    """Fail (``ValueError``, one line naming the setting that makes it large) unless
    ``copies`` float copies of the model's parameters fit in the memory available.

    Args:
        config, inputs, tasks: the model (see :func:`estimate_parameters`).
        copies: tensors of the parameters' size needed (1: the weights; training adds the
            gradients and Adam's two moments).
        what: what needs them, for the message (default: the model itself).
        table_copies: copies needed of the lookup tables' parameters (hashed ids, sequences,
            and their wide weights), when not ``copies``: in training their gradients are
            sparse (a batch's rows) and their optimizer's state is Adam's two moments, or
            row-wise Adagrad's one float per row.

    Example:
        >>> check_memory(ModelConfig("mmoe"), InputSpec.dense(10), [TaskSpec("y")])
        >>> check_memory(ModelConfig("mmoe", num_experts=10**12), InputSpec.dense(10),
        ...              [TaskSpec("y")])
        Traceback (most recent call last):
        ...
        ValueError: model 'mmoe' is too large for this machine: about ... lower num_experts ...
    """
    itemsize = torch.finfo(torch.get_default_dtype()).bits // 8
    params = estimate_parameters(config, inputs, tasks)
    tables = 0 if table_copies is None else _lookup_parameters(config, inputs, tasks)
    need = int(((params - tables) * copies + tables * (table_copies or 0)) * itemsize)
    if need < CHECKED_BYTES or need <= (free := available_memory() or need):
        return
    settings = {"num_experts": {"num_experts": 1},
                "expert_units": {"expert_units": (1,) * len(config.expert_units)},
                "tower_units": {"tower_units": (1,) * len(config.tower_units)}}
    shrunk = {name: estimate_parameters(dataclasses.replace(config, **change), inputs, tasks)
              for name, change in settings.items()}
    shrunk["embedding_dim"] = estimate_parameters(
        config, dataclasses.replace(inputs, embedding_dim=1), tasks)
    shrunk["buckets"] = estimate_parameters(config, dataclasses.replace(inputs, lookups=tuple(
        dataclasses.replace(lk, rows=2, dim=1) for lk in inputs.lookups)), tasks)
    setting = min(shrunk, key=shrunk.get)
    value = (inputs.embedding_dim if setting == "embedding_dim" else
             {lk.table: lk.rows - 1 for lk in inputs.lookups} if setting == "buckets" else
             getattr(config, setting))
    _checks.fail(f"{what or f'model {config.name!r}'} is too large for this machine: about "
                 f"{params:,} parameters, {_size(need)} as {copies} x {itemsize}-byte floats, "
                 f"with {_size(free)} of memory available; lower {setting} (now {value!r})")


@contextlib.contextmanager
def allocation_errors(where: Callable[[], str]) -> Iterator[None]:
    """Turn a failed allocation inside the block (torch's allocator ``RuntimeError``, CUDA's
    ``OutOfMemoryError``) into one ``ValueError`` line.

    Args:
        where: called on failure: where it happened and what to lower, for the message
            (after "out of memory" and the allocator's first line).

    Example:
        >>> with allocation_errors(lambda: "in the example"):
        ...     raise RuntimeError("DefaultCPUAllocator: can't allocate memory: 8 TB\\nmore")
        Traceback (most recent call last):
        ...
        ValueError: out of memory (DefaultCPUAllocator: can't allocate memory: 8 TB) in the example
    """
    try:
        yield
    except RuntimeError as err:
        if not (isinstance(err, torch.OutOfMemoryError) or "allocate memory" in str(err)):
            raise
        first = str(err).strip().splitlines()[0][:160]
        raise ValueError(f"out of memory ({first}) {where()}") from None


def model_from_description(desc: dict[str, Any]) -> MultiTaskModel:
    """Rebuild an (untrained) model from :meth:`MultiTaskModel.describe`'s output (or a
    :class:`~mmoe.models.ensemble.SeedEnsemble`'s: the same with ``members``)."""
    if "members" in desc:
        from .ensemble import SeedEnsemble  # it builds on this module

        k = desc["members"]
        _checks.check(type(k) is int and k >= 2, f"an ensemble's members must be an integer "
                      f">= 2, got {k!r}")
        one = {key: v for key, v in desc.items() if key != "members"}
        return SeedEnsemble([model_from_description(one) for _ in range(k)])
    return MultiTaskModel(ModelConfig.from_dict(desc["config"]),
                          InputSpec.from_dict(desc["inputs"]),
                          tuple(TaskSpec.from_dict(t) for t in desc["tasks"]))


def build_model(model: str | ModelConfig, inputs: InputSpec | int,
                tasks: Sequence[TaskSpec], **overrides: Any) -> MultiTaskModel:
    """Build a registered model by name.

    Args:
        model: a registered name (``"mmoe"``) or a full :class:`ModelConfig`.
        inputs: an :class:`InputSpec`, or an int d for a plain dense input of width d.
        tasks: the tasks.
        **overrides: ModelConfig fields, e.g. ``num_experts=4, expert_units=(32,)``.

    Returns:
        The model, freshly initialised from torch's global RNG.

    Example:
        >>> tasks = [TaskSpec("y1", "regression"), TaskSpec("y2", "regression")]
        >>> m = build_model("omoe", 20, tasks, num_experts=4)
        >>> m(torch.randn(3, 20)).shape
        torch.Size([3, 2])
    """
    if isinstance(model, str):
        config = ModelConfig(name=model, **overrides)
    else:
        config = ModelConfig.from_dict({**model.to_dict(), **overrides})
    spec = InputSpec.dense(inputs) if isinstance(inputs, int) else inputs
    return MultiTaskModel(config, spec, tasks)

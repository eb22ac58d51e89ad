"""What `mmoe train` runs on a user's table: a :class:`RunSpec` built from a TOML file and
command-line flags (flags override the file).

TOML layout (every section optional; relative paths are relative to the TOML file)::

    tasks = ["income:binary:>50K", "hours:regression"]   # or [[tasks]] tables:
    # [[tasks]]  name = "kids"  column = "morekids"  kind = "binary"  positive = "yes"

    [data]      train = "train.parquet"  valid = "valid.parquet"  valid_fraction = 0.1
                stream = false  buffer_rows = 65536  chunk_rows = 65536  fit_rows = 100000
    [columns]   id = ["user_id"]  weight = "w"  numeric = [...]  categorical = [...]
                exclude = [...]  group_by = "user_id"   # per-user metrics (GAUC, NDCG, MRR)
    [features.history]  kind = "sequence"  share = "item_id"  max_len = 20   # one per column:
                # kind, embedding_dim, min_count, buckets, max_len, pooling, delimiter, share
    [model]     name = "mmoe"  num_experts = 8  expert_units = [16]  embedding_dim = 8 ...
    [training]  epochs = 30  batch_size = 256  lr = 0.003  lr_schedule = "cosine"  patience = 5 ...

Every key is checked against its type (:data:`TOML_KEYS`, :data:`TASK_KEYS`) before it is
used: a wrong one is one ``ValueError`` line naming the file, the section and the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .. import _checks
from ..config import TASK_KINDS, FeatureSpec, ModelConfig, TaskSpec, TrainConfig, shown
from ..config.features import NUMERIC_ENCODINGS
from ..models import available_models

#: defaults of `mmoe train` and MultiTaskEstimator: the library's (:class:`TrainConfig`:
#: epochs and batch from the rows, warm-up and cosine, the combined score kept at its best),
#: and a run whose every step of an epoch was skipped stops.
DEFAULT_TRAINING = TrainConfig(stop_if_all_skipped=True)
DEFAULT_MODEL = ModelConfig(name="mmoe", expert_units=(32,), num_experts=8, tower_units=(16,))

#: what each TOML type name accepts, and how a message describes it
TOML_TYPES: dict[str, tuple[Any, str]] = {
    "string": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "number": (lambda v: isinstance(v, int | float) and not isinstance(v, bool)
               and math.isfinite(v), "a finite number"),
    "ints": (lambda v: isinstance(v, list) and all(isinstance(u, int) and not isinstance(u, bool)
                                                   for u in v),
             "a list of integers (layer widths, e.g. [32, 16])"),
    "strings": (lambda v: isinstance(v, str) or (isinstance(v, list)
                                                 and all(isinstance(u, str) for u in v)),
                "a string or a list of strings"),
    "table": (lambda v: isinstance(v, dict), "a table"),
    "scalar": (lambda v: isinstance(v, str | bool | int) or (isinstance(v, float)
                                                             and math.isfinite(v)),
               "a string or a number"),
    "scalars": (lambda v: isinstance(v, list) and all(TOML_TYPES["scalar"][0](u) for u in v),
                "a list of strings or numbers"),
}
_FIELD_TYPES = {"int": "int", "int | None": "int", "float": "number", "float | None": "number",
                "bool": "bool",
                "str": "string", "str | None": "string", "tuple[int, ...]": "ints",
                "dict[str, Any]": "table"}
#: every key of each section of the TOML file, with its TOML type
TOML_KEYS: dict[str, dict[str, str]] = {
    "data": {"train": "string", "valid": "string", "valid_fraction": "number",
             "stream": "bool", "buffer_rows": "int", "chunk_rows": "int", "fit_rows": "int",
             "tensorboard": "bool"},
    "columns": {"id": "strings", "weight": "string", "numeric": "strings",
                "categorical": "strings", "exclude": "strings", "group_by": "string",
                "numeric_encoding": "string"},
    "model": {**{f.name: _FIELD_TYPES[str(f.type)] for f in fields(ModelConfig)},
              "embedding_dim": "int"},
    "training": {f.name: _FIELD_TYPES[str(f.type)] for f in fields(TrainConfig)},
}
#: keys of a [features.NAME] table
FEATURE_KEYS = {"kind": "string", "embedding_dim": "int", "min_count": "int", "buckets": "int",
                "max_len": "int", "pooling": "string", "delimiter": "string", "share": "string",
                "encoding": "string"}
#: keys of a [[tasks]] table
TASK_KEYS = {"name": "string", "column": "string", "kind": "string", "positive": "scalar",
             "weight": "number", "classes": "scalars", "after": "string"}


def parse_task(text: str | dict[str, Any] | TaskSpec) -> TaskSpec:
    """A task from ``COLUMN:KIND[:POSITIVE][:after=TASK]`` (or a TOML table / TaskSpec);
    ``after`` makes it a funnel step following TASK (e.g. a purchase after a click).

    Example:
        >>> t = parse_task("morekids:binary:yes")
        >>> t.column, t.kind, t.positive
        ('morekids', 'binary', 'yes')
        >>> parse_task("purchase:binary:after=click").after
        'click'
    """
    if isinstance(text, TaskSpec):
        return text
    if isinstance(text, dict):
        data = dict(text)
        if "name" not in data and "column" in data:
            data["name"] = data["column"]
        return TaskSpec.from_dict(data)
    parts = str(text).split(":")
    usage = (f"--task '{shown(text)}': use COLUMN:KIND[:POSITIVE][:after=TASK], KIND one of "
             f"{', '.join(TASK_KINDS)} (e.g. --task morekids:binary:yes, "
             "--task purchase:binary:after=click)")
    _checks.check(len(parts) >= 2 and parts[0] != "", usage)
    column, kind, rest = parts[0], parts[1], parts[2:]
    _checks.one_of(kind, TASK_KINDS, f"--task '{shown(text)}': KIND")
    after = None
    if rest and rest[-1].startswith("after="):
        after = rest.pop()[len("after="):]
        _checks.check(after != "", usage)
    positive = ":".join(rest) if rest else None
    _checks.check(positive is None or kind == "binary",
                  f"--task '{shown(text)}': only a binary task takes a POSITIVE value")
    return TaskSpec(column, kind, column=column, positive=positive, after=after)


def parse_feature(text: str | FeatureSpec) -> FeatureSpec:
    """A feature spec from ``NAME:KIND[:KEY=VALUE,...]`` (``--feature``).

    Example:
        >>> parse_feature("history:sequence:share=item_id,max_len=50")
        FeatureSpec(name='history', kind='sequence', embedding_dim=None, min_count=1, \
buckets=0, max_len=50, pooling='mean', delimiter='|', share='item_id', encoding=None)
        >>> parse_feature("income:numeric:encoding=quantile").encoding
        'quantile'
    """
    if isinstance(text, FeatureSpec):
        return text
    usage = (f"--feature '{shown(text)}': use NAME:KIND[:KEY=VALUE,...], KIND one of numeric, "
             "categorical, hashed, sequence; keys: "
             + ", ".join(k for k in FEATURE_KEYS if k != "kind")
             + " (e.g. --feature history:sequence:share=item_id,max_len=50)")
    name, _, rest = str(text).partition(":")
    kind, _, options = rest.partition(":")
    _checks.check(bool(name and kind), usage)
    values: dict[str, Any] = {"kind": kind}
    for item in filter(None, options.split(",")):
        key, eq, value = item.partition("=")
        _checks.check(bool(eq) and key.strip() in FEATURE_KEYS.keys() - {"kind"}, usage)
        key = key.strip()
        if FEATURE_KEYS[key] == "int":
            _checks.check(value.strip().lstrip("-").isdigit(),
                          f"--feature '{shown(text)}': {key} must be an integer")
            values[key] = int(value)
        else:
            values[key] = value
    return FeatureSpec(name, **values)


def _toml_features(table: Any, path: str) -> tuple[FeatureSpec, ...]:
    """The ``[features.NAME]`` tables of a config file."""
    _checks.check(isinstance(table, dict), f"config file '{path}': [features] must hold "
                  f"[features.NAME] tables, got {_toml_type(table)}")
    specs = []
    for name, fields_ in table.items():
        where = f"config file '{path}': [features.{shown(name)}]"
        _checks.check(isinstance(fields_, dict), f"{where} must be a table (kind = ...)")
        try:
            specs.append(FeatureSpec(name, **_typed(fields_, FEATURE_KEYS, where)))
        except ValueError as err:
            _checks.fail(f"{where}: {err}" if where not in str(err) else str(err))
    return tuple(specs)


@dataclass(frozen=True)
class RunSpec:
    """Everything `mmoe train` needs.

    Attributes:
        train: training file (CSV, CSV.gz or Parquet).
        tasks: the tasks, in task-axis order.
        valid: validation file; ``None``: hold out ``valid_fraction`` of the training rows.
        id_columns: columns copied to predictions and never used as inputs.
        weight_column: per-row sample weights.
        numeric, categorical: column type overrides (``None``: inferred).
        exclude: columns never used as inputs.
        features: column specs stated exactly (hashed ids, sequences, widths, shared tables);
            other columns are inferred (:mod:`mmoe.data.inference`).
        group_by: column whose values group rows (users) for GAUC, NDCG@k and MRR in the
            validation history.
        model: model shape; ``embedding_dim``: categorical embedding width.
        training: training settings.
        stream: train batch by batch from the file through a shuffle buffer.
        buffer_rows, chunk_rows: shuffle-buffer and read-chunk sizes (streaming).
        fit_rows: streaming: rows at the head of the file the encoder is fitted on.
        tensorboard: write TensorBoard event files into the model directory.
    """

    train: str
    tasks: tuple[TaskSpec, ...]
    valid: str | None = None
    valid_fraction: float = 0.1
    id_columns: tuple[str, ...] = ()
    weight_column: str | None = None
    numeric: tuple[str, ...] | None = None
    categorical: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    features: tuple[FeatureSpec, ...] = ()
    group_by: str | None = None
    numeric_encoding: str = "auto"
    model: ModelConfig = DEFAULT_MODEL
    embedding_dim: int = 8
    training: TrainConfig = DEFAULT_TRAINING
    stream: bool = False
    buffer_rows: int = 65_536
    chunk_rows: int = 65_536
    fit_rows: int = 100_000
    tensorboard: bool = False

    def __post_init__(self) -> None:
        _checks.check(bool(self.train), "no training file; pass --train FILE (or [data] train "
                      "in the config file)")
        _checks.check(len(self.tasks) >= 1, "no tasks; pass --task COLUMN:KIND[:POSITIVE] "
                      "(e.g. --task income:binary:>50K)")
        names = [t.name for t in self.tasks]
        dup = sorted({n for n in names if names.count(n) > 1})
        _checks.check(not dup, f"task(s) {dup} given twice; each task needs its own name")
        _checks.check(0.0 < self.valid_fraction < 1.0,
                      f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        models = available_models()
        _checks.check(self.model.name in models, f"unknown model '{shown(self.model.name)}'; "
                      f"choose one of: {', '.join(sorted(models))} (see `mmoe models`)")
        _checks.positive_int(self.embedding_dim, "embedding_dim")
        _checks.one_of(self.numeric_encoding, ("auto", *NUMERIC_ENCODINGS),
                       "numeric_encoding")
        for name in ("buffer_rows", "chunk_rows", "fit_rows"):
            _checks.positive_int(getattr(self, name), name)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (written to the model directory's config.json)."""
        return {"data": {"train": self.train, "valid": self.valid,
                         "valid_fraction": self.valid_fraction, "stream": self.stream,
                         "buffer_rows": self.buffer_rows, "chunk_rows": self.chunk_rows,
                         "fit_rows": self.fit_rows, "tensorboard": self.tensorboard},
                "columns": {"id": list(self.id_columns), "weight": self.weight_column,
                            "numeric": None if self.numeric is None else list(self.numeric),
                            "categorical": (None if self.categorical is None
                                            else list(self.categorical)),
                            "exclude": list(self.exclude), "group_by": self.group_by,
                            "numeric_encoding": self.numeric_encoding},
                "features": {f.name: {k: v for k, v in f.to_dict().items() if k != "name"}
                             for f in self.features},
                "tasks": [t.to_dict() for t in self.tasks],
                "model": {**self.model.to_dict(), "embedding_dim": self.embedding_dim},
                "training": self.training.to_dict()}


def _split_list(values: Any) -> tuple[str, ...] | None:
    """Lists from TOML or repeated/comma-separated flags; ``None`` stays ``None``."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    return tuple(v.strip() for item in values for v in str(item).split(",") if v.strip())


def _read_toml(path: str) -> dict[str, Any]:
    import tomllib  # Python >= 3.11

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file '{path}' does not exist")
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        _checks.fail(f"config file '{path}' is not valid TOML: {err}")
    return {}


def _typed(table: dict[str, Any], types: dict[str, str], where: str,
           sep: str = " ") -> dict[str, Any]:
    """``table`` after checking every key is known and every value has its TOML type; a
    message reads ``{where}{sep}{key} must be ...``."""
    unknown = sorted(set(table) - set(types))
    _checks.check(not unknown, f"{where}: unknown key(s) {', '.join(map(shown, unknown))}; "
                  f"allowed: {', '.join(sorted(types))}")
    for key, value in table.items():
        accepts, what = TOML_TYPES[types[key]]
        if not accepts(value):
            text = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            _checks.fail(f"{where}{sep}{key} must be {what}, got {text} ({_toml_type(value)})")
    return dict(table)


def _toml_type(value: Any) -> str:
    """The TOML name of a parsed value's type."""
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"),
                       (list, "array"), (dict, "table")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _unset_nulls(value: Any) -> Any:
    """A JSON config's ``null`` is a TOML key left out (the default)."""
    if isinstance(value, dict):
        return {k: _unset_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_unset_nulls(v) for v in value]
    return value


def _section(doc: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    sec = doc.get(name, {})
    _checks.check(isinstance(sec, dict), f"config file '{path}': [{name}] must be a table, "
                  f"got {_toml_type(sec)}")
    return _typed(sec, TOML_KEYS[name], f"config file '{path}': [{name}]")


def _toml_tasks(tasks: Any, path: str) -> list[Any]:
    """The ``tasks`` of a config file: ``COLUMN:KIND[:POSITIVE]`` strings or tables with a
    column (a table without a name is named after its column)."""
    _checks.check(isinstance(tasks, list), f"config file '{path}': tasks must be a list of "
                  f"\"COLUMN:KIND[:POSITIVE]\" strings or [[tasks]] tables, got "
                  f"{_toml_type(tasks)}")
    for i, task in enumerate(tasks, 1):
        _checks.check(isinstance(task, str | dict), f"config file '{path}': tasks entry {i} "
                      f"must be \"COLUMN:KIND[:POSITIVE]\" or a [[tasks]] table, got "
                      f"{repr(task)[:60]}")
        if isinstance(task, dict):
            where = f"config file '{path}': [[tasks]] entry {i}"
            _typed(task, TASK_KEYS, where, ": ")
            _checks.check("column" in task or "name" in task,
                          f"{where} has no column; add column = \"LABEL_COLUMN\" (and "
                          "kind = \"binary\", \"regression\" or \"multiclass\")")
    return tasks


def build_run_spec(config_file: str | None = None, *, doc: dict[str, Any] | None = None,
                   **flags: Any) -> RunSpec:
    """Merge a TOML config file (optional) with command-line flags; flags given win.

    Args:
        config_file: TOML file (see the module docstring).
        doc: instead of a file, its content as a dict (for example a model directory's
            ``config.json``: keys other than the config file's sections are ignored).
        **flags: ``train``, ``valid``, ``tasks`` (strings), ``model``, ``epochs``,
            ``batch_size``, ``seed``, ``lr``, ``threads``, ``id_columns``, ``weight_column``,
            ``numeric``, ``categorical``, ``exclude``, ``stream``, ``buffer_rows``,
            ``chunk_rows``, ``fit_rows``, ``tensorboard``, ``valid_fraction``,
            ``checkpoint_every``, ``on_nonfinite``, ``compile``, ``loss_weighting``,
            ``gate_dropout``, ``gate_balance``, ``num_experts``, ``expert_units``,
            ``tower_units``, ``embedding_dim``, ``dropout``, ``batch_norm``, ``hidden_norm``,
            ``wide``, ``cross``, ``options`` (a
            table, merged over the config's), ``weight_decay``, ``lr_schedule``, ``warmup``,
            ``monitor``, ``patience``, ``restore_best``, ``precision``, ``ensemble``,
            ``numeric_encoding``,
            ``features`` (``NAME:KIND[:KEY=VALUE,...]``
            strings, each replacing the config's spec of that column), ``group_by``; ``None``
            or empty means "not given".

    Returns:
        The :class:`RunSpec`.

    Raises:
        ValueError: one line naming the file, section and key of a wrong setting.
        FileNotFoundError: ``config_file`` does not exist.

    Example:
        >>> build_run_spec(train="t.csv", tasks=["y:binary"], epochs=3).training.epochs
        3
    """
    sections = ("data", "columns", "tasks", "features", "model", "training")
    doc = {k: _unset_nulls(value) for k, value in (doc or {}).items() if k in sections}
    base = Path(".")
    if config_file:
        doc = _read_toml(config_file)
        base = Path(config_file).parent
        unknown = sorted(set(doc) - set(sections))
        _checks.check(not unknown, f"config file '{config_file}': unknown section(s) "
                      f"{', '.join(map(shown, unknown))}; use data, columns, tasks, features, "
                      "model, training")
    where = config_file or ""
    data, cols, model, training = (_section(doc, name, where)
                                   for name in ("data", "columns", "model", "training"))
    for key in ("train", "valid"):
        if data.get(key):
            data[key] = str(base / data[key])

    def given(name: str) -> bool:
        value = flags.get(name)
        return value is not None and value != () and value != []

    # flags named as their config key, per section; then the few named otherwise
    same = [(data, ("train", "valid", "valid_fraction", "stream", "buffer_rows", "chunk_rows",
                    "fit_rows", "tensorboard")),
            (cols, ("numeric", "categorical", "exclude", "group_by", "numeric_encoding")),
            (model, ("gate_dropout", "gate_balance", "num_experts", "expert_units",
                     "tower_units", "embedding_dim", "dropout", "batch_norm", "hidden_norm", "wide",
                     "cross")),
            (training, ("epochs", "batch_size", "seed", "lr", "threads", "checkpoint_every",
                        "on_nonfinite", "compile", "precision", "loss_weighting",
                        "weight_decay",
                        "lr_schedule", "warmup", "monitor", "patience", "restore_best",
                        "ensemble"))]
    where_flags = {flag: (sec, flag) for sec, names in same for flag in names}
    where_flags |= {"id_columns": (cols, "id"), "weight_column": (cols, "weight"),
                    "model": (model, "name")}
    for flag, (sec, key) in where_flags.items():
        if given(flag):
            sec[key] = flags[flag]
    if given("options"):  # merged over the config file's options
        model["options"] = {**(model.get("options") or {}), **flags["options"]}
    tasks = (flags.get("tasks") if given("tasks")
             else _toml_tasks(doc.get("tasks", []), where))
    _checks.check(isinstance(tasks, list | tuple), f"tasks must be a list, got {tasks!r}")
    features = {f.name: f for f in _toml_features(doc.get("features", {}), where)}
    features.update({f.name: f for f in map(parse_feature, flags.get("features") or ())})
    embedding_dim = model.pop("embedding_dim", 8)
    model_cfg = ModelConfig.from_dict({**DEFAULT_MODEL.to_dict(), **model})
    train_cfg = TrainConfig.from_dict({**DEFAULT_TRAINING.to_dict(), **training})
    spec = RunSpec(
        train=data.pop("train", ""), tasks=tuple(parse_task(t) for t in tasks),
        valid=data.pop("valid", None), id_columns=_split_list(cols.get("id")) or (),
        weight_column=cols.get("weight"), numeric=_split_list(cols.get("numeric")),
        categorical=_split_list(cols.get("categorical")),
        exclude=_split_list(cols.get("exclude")) or (), features=tuple(features.values()),
        group_by=cols.get("group_by"), numeric_encoding=cols.get("numeric_encoding", "auto"),
        model=model_cfg,
        embedding_dim=embedding_dim, training=train_cfg)
    return replace(spec, **data)

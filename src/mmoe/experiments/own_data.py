"""Train, evaluate and predict on a user's own table (the library behind `mmoe train`,
`mmoe evaluate` and `mmoe predict`).

Every data error names the file it came from; nothing is written until training has
succeeded, and an existing model directory or prediction file is only replaced by a complete
new one.

Kill and resume: while ``mmoe train --out DIR`` runs, its checkpoint (model, optimizer, RNG and
trainer state, the run's settings and fitted encoder) lives beside DIR in ``.DIR.partial/
checkpoint.pt``, rewritten atomically at every epoch end and every ``checkpoint_every`` steps.
DIR itself is only created, complete, by the final rename of the model directory, after which
the partial directory is removed. ``--resume`` continues from that checkpoint (bit-identical
to an uninterrupted run on CPU); without it a leftover checkpoint is an error unless
``--overwrite`` discards it.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import _checks
from ..data.encoders import TableEncoder
from ..data.readers import DEFAULT_CHUNK_ROWS, TableWriter, iter_table, read_table
from ..data.table import TensorTable
from ..metrics import evaluate, task_outputs
from ..models import MultiTaskModel, build_model
from ..train.checkpoint import load_checkpoint
from ..train.distributed import env_rank, env_world
from ..train.loop import FitResult, Trainer, predict_logits
from ..train.model_dir import ModelDir, check_output_dir, load_model_dir, save_model_dir
from ..train.stream import StreamTrainer, shuffle_batches
from .run_config import RunSpec

GATE_ROWS = 4096  # validation rows the gate-utilisation figure averages over
CHECKPOINT = "checkpoint.pt"


@contextlib.contextmanager
def in_file(path: str | os.PathLike) -> Iterator[None]:
    """Prefix data errors raised inside the block with the file they concern."""
    try:
        yield
    except ValueError as err:
        msg = str(err)
        if str(path) in msg:
            raise
        raise ValueError(f"file '{path}': {msg}") from None


# ---- encoding and prediction ---------------------------------------------------------------
def make_encoder(spec: RunSpec) -> TableEncoder:
    """An unfitted encoder for ``spec``'s tasks and columns (regression labels standardised)."""
    return TableEncoder(spec.tasks, numeric=spec.numeric, categorical=spec.categorical,
                        weight_column=spec.weight_column,
                        exclude=tuple(spec.id_columns) + tuple(spec.exclude),
                        scale_regression=True)


def original_scale(encoder: TableEncoder, model: MultiTaskModel, logits: np.ndarray,
                   labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Regression outputs (and labels) back in the label's original scale."""
    logits = logits.copy()
    labels = None if labels is None else labels.copy()
    for t, (task, cols) in enumerate(zip(model.tasks, model.task_slices, strict=True)):
        if task.kind == "regression":
            logits[:, cols] = encoder.unscale(task.name, logits[:, cols])
            if labels is not None:
                labels[:, t] = encoder.unscale(task.name, labels[:, t])
    return logits, labels


def evaluate_table(model: MultiTaskModel, encoder: TableEncoder,
                   table: TensorTable) -> dict[str, dict[str, float]]:
    """Per-task metrics on a labelled table, regression in the label's original scale."""
    logits = predict_logits(model, table).numpy()
    logits, labels = original_scale(encoder, model, logits, table.labels.numpy())
    weights = None if table.weights is None else table.weights.numpy()
    return evaluate(model.tasks, model.task_slices, logits, labels, weights)


def predict_frame(model: MultiTaskModel, encoder: TableEncoder, df: pd.DataFrame,
                  id_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Predictions for ``df``: id columns, then one column per task named as the task.

    binary: P(positive class); regression: the value in the label's scale; multiclass: the
    predicted class label plus ``<task>_proba_<class>`` columns.

    Example:
        >>> predict_frame(model, encoder, df, ("user_id",)).columns  # doctest: +SKIP
        Index(['user_id', 'income', 'kids', 'kids_proba_0', ...])
    """
    table = encoder.transform(df, labels=False)
    logits, _ = original_scale(encoder, model, predict_logits(model, table).numpy())
    out: dict[str, Any] = {c: df[c].to_numpy() for c in id_columns}
    for task, cols in zip(model.tasks, model.task_slices, strict=True):
        if task.kind == "regression":
            out[task.name] = logits[:, cols][:, 0]
        elif task.kind == "binary":
            out[task.name] = task_outputs(task, logits[:, cols])
        else:
            proba = task_outputs(task, logits[:, cols])  # (N, C)
            out[task.name] = np.asarray(task.classes, dtype=object)[proba.argmax(1)]
            for j, cls in enumerate(task.classes):
                out[f"{task.name}_proba_{cls}"] = proba[:, j]
    return pd.DataFrame(out)


def _history_in_original_scale(history: list[dict[str, Any]],
                               encoder: TableEncoder) -> list[dict[str, Any]]:
    """MSE during training is on standardised labels; MSE scales by std² (R² is unchanged)."""
    for record in history:
        for name, metrics in record.get("valid", {}).items():
            if name in encoder.label_stats and "mse" in metrics:
                metrics["mse"] *= encoder.label_stats[name][1] ** 2
    return history


# ---- figures and event files ---------------------------------------------------------------
@torch.inference_mode()
def gate_utilisation(model: MultiTaskModel, table: TensorTable) -> np.ndarray | None:
    """Mean gate weight per (gate, expert) over ``table``'s rows, (G, E); ``None``: no gates."""
    model.eval()
    _, gates = model.forward_with_gates(*table.take(slice(0, GATE_ROWS)).inputs())
    return None if gates is None else gates.mean(1).numpy()  # (G, B, E) -> (G, E)


def gate_figure_png(model: MultiTaskModel, table: TensorTable) -> bytes:
    """A heatmap of :func:`gate_utilisation` as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usage = gate_utilisation(model, table)
    fig, ax = plt.subplots(figsize=(6, 2.5))
    if usage is None:
        ax.text(0.5, 0.5, f"model '{model.config.name}' has no gates", ha="center",
                va="center")
        ax.set_axis_off()
    else:
        g, e = usage.shape
        fig.set_size_inches(max(4.0, 0.6 * e + 2), max(2.0, 0.5 * g + 1.2))
        im = ax.imshow(usage, cmap="viridis", vmin=0.0, aspect="auto")
        names = ([t.name for t in model.tasks] if g == len(model.tasks)
                 else [f"gate {i}" for i in range(g)])
        ax.set_yticks(range(g), names)
        ax.set_xticks(range(e), [str(i) for i in range(e)])
        ax.set_xlabel("expert")
        for i in range(g):
            for j in range(e):
                ax.text(j, i, f"{usage[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if usage[i, j] < usage.max() / 2 else "black")
        fig.colorbar(im, ax=ax, label="mean gate weight")
        ax.set_title(f"{model.config.name}: gate utilisation on validation rows")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_tensorboard(directory: Path, history: list[dict[str, Any]]) -> None:
    """Per-epoch training losses, validation metrics and samples/s as TensorBoard scalars."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        _checks.fail("--tensorboard needs the tensorboard package: "
                     "pip install 'mmoe[tensorboard]'")
    writer = SummaryWriter(log_dir=str(directory))
    for record in history:
        step = record["epoch"]
        for task, loss in record["train_loss"].items():
            writer.add_scalar(f"train_loss/{task}", loss, step)
        for task, metrics in record.get("valid", {}).items():
            for name, value in metrics.items():
                if name != "n" and value is not None and not math.isnan(value):
                    writer.add_scalar(f"valid/{task}/{name}", value, step)
        if record.get("samples_per_s"):
            writer.add_scalar("samples_per_s", record["samples_per_s"], step)
    writer.close()


# ---- training ------------------------------------------------------------------------------
def _label_columns(spec: RunSpec) -> list[str]:
    return [str(t.column) for t in spec.tasks]


def _holdout(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random split (train, valid) of ``df``."""
    _checks.check(len(df) >= 2, f"the training file has {len(df)} row(s); at least 2 are needed "
                  "to hold out validation rows (or pass --valid FILE)")
    order = np.random.default_rng(seed).permutation(len(df))
    n_valid = min(max(1, round(fraction * len(df))), len(df) - 1)
    valid = df.iloc[np.sort(order[:n_valid])].reset_index(drop=True)
    train = df.iloc[np.sort(order[n_valid:])].reset_index(drop=True)
    return train, valid


def _build(spec: RunSpec, encoder: TableEncoder) -> MultiTaskModel:
    torch.manual_seed(spec.training.seed)  # initialisation
    return build_model(spec.model, encoder.input_spec(spec.embedding_dim), encoder.tasks)


def train_in_memory(spec: RunSpec, progress: bool | None = None, *,
                    checkpoint: Path | None = None, resume: bool = False, device: str = "auto"
                    ) -> tuple[MultiTaskModel, TableEncoder, FitResult, TensorTable]:
    """Read, encode and train on whole files (checkpointing to ``checkpoint``, resuming from
    it with ``resume``). Returns (model, encoder, fit result, valid)."""
    with in_file(spec.train):
        df = read_table(spec.train, categorical=spec.categorical or ())
    if spec.valid:
        train_df = df
        with in_file(spec.valid):
            valid_df = read_table(spec.valid, categorical=spec.categorical or ())
    else:
        train_df, valid_df = _holdout(df, spec.valid_fraction, spec.training.seed)
    del df
    encoder = make_encoder(spec)
    with in_file(spec.train):
        encoder.fit(train_df)
        train = encoder.transform(train_df)
    with in_file(spec.valid or spec.train):
        valid = encoder.transform(valid_df)
    del train_df, valid_df
    model = _build(spec, encoder)
    extras = _resume_extras(spec, encoder, checkpoint, resume)
    result = Trainer(model, spec.training, progress=progress, checkpoint=checkpoint,
                     extras=extras, device=device).fit(train, valid, resume=resume)
    return model, encoder, result, valid


def _head(path: str, rows: int, spec: RunSpec, columns: list[str] | None) -> pd.DataFrame:
    """The first ``rows`` rows of a file, read in chunks."""
    parts, have = [], 0
    for chunk in iter_table(path, min(spec.chunk_rows, rows), columns,
                            categorical=spec.categorical or ()):
        parts.append(chunk.iloc[: rows - have])
        have += len(parts[-1])
        if have >= rows:
            break
    return pd.concat(parts, ignore_index=True)


def train_streaming(spec: RunSpec, progress: bool | None = None, *,
                    checkpoint: Path | None = None, resume: bool = False, device: str = "auto"
                    ) -> tuple[MultiTaskModel, TableEncoder, FitResult, TensorTable]:
    """Train batch by batch from the file through a shuffle buffer (bounded memory).

    The encoder is fitted on the first ``fit_rows`` rows. Without a validation file every
    k-th of those rows (k = 1/valid_fraction) is held out and skipped in training.
    """
    with in_file(spec.train):
        head = _head(spec.train, spec.fit_rows, spec, None)
        keep = [c for c in head.columns if c not in spec.id_columns
                and c not in spec.exclude]  # only the columns the model reads
    every = max(2, round(1 / spec.valid_fraction))
    holdout_rows = 0
    if spec.valid:
        with in_file(spec.valid):
            valid_df = read_table(spec.valid, categorical=spec.categorical or ())
        fit_df = head
    else:
        _checks.check(len(head) >= 2, f"file '{spec.train}': too few rows to hold out "
                      "validation rows; pass --valid FILE")
        is_valid = np.arange(len(head)) % every == 0
        valid_df, fit_df = head[is_valid], head[~is_valid]
        holdout_rows = len(head)
    encoder = make_encoder(spec)
    with in_file(spec.train):
        encoder.fit(fit_df)
    with in_file(spec.valid or spec.train):
        valid = encoder.transform(valid_df)
    del head, fit_df, valid_df

    def chunks() -> Iterator[TensorTable]:
        offset = 0
        with in_file(spec.train):
            for chunk in iter_table(spec.train, spec.chunk_rows, keep,
                                    categorical=spec.categorical or ()):
                index = np.arange(offset, offset + len(chunk))
                offset += len(chunk)
                if holdout_rows and index[0] < holdout_rows:
                    drop = (index < holdout_rows) & (index % every == 0)
                    chunk = chunk[~drop]
                if len(chunk):
                    yield encoder.transform(chunk)

    cfg = spec.training
    model = _build(spec, encoder)
    extras = _resume_extras(spec, encoder, checkpoint, resume)
    trainer = StreamTrainer(model, cfg, progress=progress, checkpoint=checkpoint, extras=extras,
                            device="cpu" if device == "auto" else device)  # CPU-only path
    result = trainer.fit_stream(
        lambda epoch: shuffle_batches(chunks(), cfg.batch_size, spec.buffer_rows, cfg.seed,
                                      epoch), valid, resume=resume)
    return model, encoder, result, valid


def partial_dir(out: str | os.PathLike) -> Path:
    """Where an unfinished ``--out DIR`` keeps its checkpoint: ``.DIR.partial`` beside DIR."""
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.partial"


def _resume_extras(spec: RunSpec, encoder: TableEncoder, checkpoint: Path | None,
                   resume: bool) -> dict[str, Any]:
    """What every checkpoint records about the run; on resume it must match the saved one
    (the trainer itself checks the training settings)."""
    run = {k: v for k, v in spec.to_dict().items() if k != "training"}
    extras = json.loads(json.dumps({"run": run, "encoder": encoder.to_dict()}, default=str))
    if not (resume and checkpoint is not None and checkpoint.exists()):
        return extras
    try:
        saved = load_checkpoint(checkpoint)["extras"]
    except ValueError as err:
        raise ValueError(f"{err}; delete '{checkpoint.parent}' or pass --overwrite to start "
                         "over") from None
    for key, what in (("run", "data, column, task or model settings"),
                      ("encoder", "data (the fitted encoder differs)")):
        _checks.check(saved.get(key) == extras[key],
                      f"cannot resume from '{checkpoint}': it was written with different "
                      f"{what}; rerun with the same settings, or pass --overwrite (without "
                      "--resume) to start over")
    return extras


def _clean_leftovers(out: Path, partial: Path) -> None:
    """Remove what a killed run can leave: temp files of a checkpoint write and an
    unfinished model-directory staging folder (neither is ever read)."""
    for tmp in partial.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    for stage in out.parent.glob(f".{out.name}.tmp-*"):
        shutil.rmtree(stage, ignore_errors=True)


def train_run(spec: RunSpec, out: str | os.PathLike, *, overwrite: bool = False,
              progress: bool | None = None, resume: bool = False,
              device: str = "auto") -> dict[str, Any]:
    """Train on ``spec`` and write a model directory at ``out``.

    Args:
        spec: what to train (see :func:`~mmoe.experiments.run_config.build_run_spec`).
        out: the model directory to write (refused if it exists and is not empty, unless
            ``overwrite``; it is replaced only after training succeeded).
        overwrite: replace an existing model directory (and discard the checkpoint of an
            interrupted run).
        progress: progress bars (default: when stderr is a terminal).
        resume: continue an interrupted run from its checkpoint (``.DIR.partial``) when one
            exists; start fresh otherwise.
        device: ``auto``, ``cpu`` or ``cuda``. Under ``torchrun`` every rank trains on its
            share of each batch and only rank 0 touches the output directory.

    Returns:
        ``metrics.json``'s content.

    Example:
        >>> spec = build_run_spec(train="train.csv", tasks=["y:binary"])  # doctest: +SKIP
        >>> train_run(spec, "runs/m1")["valid"]["y"]["auc"]  # doctest: +SKIP
    """
    main = env_rank() == 0  # under torchrun, only rank 0 touches the output directory
    _checks.check(not (spec.stream and env_world() > 1),
                  "--stream trains in one process; drop --stream to train under torchrun")
    out = Path(os.path.abspath(out))
    partial = partial_dir(out)
    checkpoint = partial / CHECKPOINT
    if main:
        check_output_dir(out, overwrite)
        _checks.writable_dir(out)  # fail now, not after training
        if checkpoint.exists() and not resume and not overwrite:
            _checks.fail(f"an interrupted run of --out '{out}' left a checkpoint in "
                         f"'{partial}'; pass --resume to continue it, or --overwrite to start "
                         "over")
        if not resume:
            shutil.rmtree(partial, ignore_errors=True)  # created by the first checkpoint
        _clean_leftovers(out, partial)
    _checks.check(spec.training.checkpoint_every is None or not spec.stream,
                  "--stream checkpoints at epoch ends only; drop --checkpoint-every")
    if spec.tensorboard:  # fail before training, not after
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            _checks.fail("--tensorboard needs the tensorboard package: "
                         "pip install 'mmoe[tensorboard]'")
    train = train_streaming if spec.stream else train_in_memory
    model, encoder, result, valid = train(spec, progress, checkpoint=checkpoint,
                                           resume=resume, device=device)
    history = _history_in_original_scale(result.history, encoder)
    final = evaluate_table(model, encoder, valid)
    speeds = [r["samples_per_s"] for r in history if r.get("samples_per_s")]
    metrics = {"valid": final, "history": history,
               "best_epoch": result.best_epoch,
               "valid_rows": len(valid),
               "samples_per_s": float(np.mean(speeds)) if speeds else None}
    if not main:
        return metrics
    png = gate_figure_png(model, valid)

    def extra(stage: Path) -> None:
        (stage / "gates.png").write_bytes(png)
        if spec.tensorboard:
            write_tensorboard(stage / "tensorboard", history)

    from ._provenance import git_commit

    config = {**spec.to_dict(), "tasks": [t.to_dict() for t in encoder.tasks],
              "git_commit": git_commit()}
    save_model_dir(out, model, encoder, config, metrics, write_extra=extra, overwrite=overwrite)
    shutil.rmtree(partial, ignore_errors=True)  # the run is complete: nothing to resume
    return metrics


def _declared_categorical(md: ModelDir) -> tuple[str, ...]:
    """Columns the user declared categorical at training (read as text, as then)."""
    return tuple(md.config.get("columns", {}).get("categorical") or ())


def evaluate_dir(model_dir: str | os.PathLike, path: str | os.PathLike,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS) -> dict[str, dict[str, float]]:
    """Per-task metrics of a model directory on a labelled file (regression in label scale).

    Example:
        >>> evaluate_dir("runs/m1", "test.parquet")["income"]["auc"]  # doctest: +SKIP
    """
    md = load_model_dir(model_dir)
    logits, labels, weights = [], [], []
    with in_file(path):
        for chunk in iter_table(path, chunk_rows, categorical=_declared_categorical(md)):
            table = md.encoder.transform(chunk)
            logits.append(predict_logits(md.model, table).numpy())
            labels.append(table.labels.numpy())
            if table.weights is not None:
                weights.append(table.weights.numpy())
    lg, lb = original_scale(md.encoder, md.model, np.concatenate(logits), np.concatenate(labels))
    w = np.concatenate(weights) if weights else None
    return evaluate(md.model.tasks, md.model.task_slices, lg, lb, w)


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per task, one column per metric."""
    names = sorted({m for res in metrics.values() for m in res if m != "n"})
    header = ["task", "n", *names]
    rows = [[task, str(int(res.get("n", 0)))]
            + [f"{res[m]:.4f}" if m in res else "" for m in names]
            for task, res in metrics.items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def predict_file(model_dir: str | os.PathLike, path: str | os.PathLike,
                 out: str | os.PathLike, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
    """Predict every row of ``path`` into ``out`` (CSV or Parquet by extension), in chunks.

    The id columns the model was trained with are copied when the file has them. ``out`` is
    written atomically: a failure leaves any existing ``out`` as it was.

    Returns:
        The number of rows written.

    Example:
        >>> predict_file("runs/m1", "new.csv", "preds.parquet")  # doctest: +SKIP
    """
    md: ModelDir = load_model_dir(model_dir)
    ids = tuple(md.config.get("columns", {}).get("id", []) or ())
    with TableWriter(out) as writer, in_file(path):
        for chunk in iter_table(path, chunk_rows, categorical=_declared_categorical(md)):
            present = tuple(c for c in ids if c in chunk.columns)
            writer.write(predict_frame(md.model, md.encoder, chunk, present))
    return writer.rows

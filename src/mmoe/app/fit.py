"""Train on a user's own table and write a model directory (the library behind `mmoe train`).

Every data error names the file it came from; nothing is written until training has
succeeded, and an existing model directory is only replaced by a complete new one.

Kill and resume: while ``mmoe train --out DIR`` runs, its checkpoint (model, optimizer, RNG and
trainer state, the run's settings and fitted encoder) lives beside DIR in ``.DIR.partial/
checkpoint.pt``, rewritten atomically at every epoch end and every ``checkpoint_every`` steps.
DIR itself is only created, complete, by the final rename of the model directory, after which
the partial directory is removed. ``--resume`` continues from that checkpoint (bit-identical
to an uninterrupted run on CPU); without it a leftover checkpoint is an error unless
``--overwrite`` discards it.

One run at a time: a run holds a lock on ``.DIR.partial`` (``fcntl.flock``, released when its
process ends, however it dies) from before reading any data, so a second run on the same
``--out`` is refused at once instead of after training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import _checks
from .._fileio import clean_leftovers, locked_dir, write_json
from .._version import git_commit
from ..data.encoders import TableEncoder
from ..data.files import parquet_rows
from ..data.table import TensorTable
from ..diagnostics import gate_heatmap, learning_curves, utilisation_frame
from ..models import MultiTaskModel, build_model
from ..models.registry import is_gated
from ..train import FitResult, StreamEpochs, Trainer, shuffle_batches
from ..train.checkpoint import load_checkpoint
from ..train.distributed import env_rank, env_world
from ..train.model_dir import check_output_dir, save_model_dir
from .ensemble import fit_members
from .predict import evaluate_table
from .schema import schema, schema_text
from .spec import RunSpec
from .tables import read_run_tables, stream_run_tables

CHECKPOINT = "checkpoint.pt"


def _history_in_original_scale(history: list[dict[str, Any]],
                               encoder: TableEncoder) -> list[dict[str, Any]]:
    """MSE during training is on standardised labels; MSE scales by std² (R² is unchanged)."""
    for record in history:
        for name, metrics in record.get("valid", {}).items():
            if name in encoder.label_stats and "mse" in metrics:
                metrics["mse"] *= encoder.label_stats[name][1] ** 2
    return history


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
def for_rows(spec: RunSpec, rows: int | None) -> RunSpec:
    """``spec`` with the model's ``None`` dropout and gate dropout chosen for ``rows`` training
    rows (:meth:`mmoe.config.ModelConfig.for_rows`)."""
    return dataclasses.replace(spec, model=spec.model.for_rows(rows, is_gated(spec.model)))


def build_for(spec: RunSpec, encoder: TableEncoder) -> MultiTaskModel:
    """The model ``spec`` names, initialised under ``torch.manual_seed(spec.training.seed)``."""
    torch.manual_seed(spec.training.seed)  # initialisation
    return build_model(spec.model, encoder.input_spec(spec.embedding_dim), encoder.tasks)


def train_in_memory(spec: RunSpec, progress: bool | None = None, *,
                    checkpoint: Path | None = None, resume: bool = False, device: str = "auto",
                    announce: Callable[[str], None] | None = None
                    ) -> tuple[MultiTaskModel, TableEncoder, FitResult, TensorTable]:
    """Read, encode and train on whole files (checkpointing to ``checkpoint``, resuming from
    it with ``resume``; ``announce`` gets the fitted input columns' table before training).
    Returns (model, encoder, fit result, valid)."""
    encoder, train, valid = read_run_tables(spec)
    if announce is not None:
        announce(schema_text(encoder, spec.to_dict(), spec.embedding_dim))
    spec = for_rows(spec, len(train))

    def fit(member: RunSpec, checkpoint: Path | None) -> tuple[MultiTaskModel, FitResult]:
        model = build_for(member, encoder)
        extras = _resume_extras(member, encoder, checkpoint, resume)
        return model, Trainer(model, member.training, progress=progress,
                              checkpoint=checkpoint, extras=extras,
                              device=device).fit(train, valid, resume=resume)

    model, result = fit_members(spec, fit, len(train), checkpoint, resume, announce)
    return model, encoder, result, valid


def train_streaming(spec: RunSpec, progress: bool | None = None, *,
                    checkpoint: Path | None = None, resume: bool = False, device: str = "auto",
                    announce: Callable[[str], None] | None = None
                    ) -> tuple[MultiTaskModel, TableEncoder, FitResult, TensorTable]:
    """Train batch by batch from the file through a shuffle buffer (bounded memory; see
    :func:`~mmoe.app.tables.stream_run_tables`)."""
    encoder, chunks, valid = stream_run_tables(spec)
    if announce is not None:
        announce(schema_text(encoder, spec.to_dict(), spec.embedding_dim))
    # Parquet: rows from the footers (less the rows held out); CSV: unknown in advance, so
    # batch 1024, 10 epochs and a schedule that moves by epoch
    total = parquet_rows(spec.train)
    rows = None if total is None else total - (0 if spec.valid else len(valid))
    spec = for_rows(spec, rows)
    cfg = spec.training.for_rows(rows)  # the batch size, the same for every member
    steps = None
    if rows is not None:  # a last batch of one row is skipped under batch norm
        single = spec.model.normalises_batches and rows % cfg.batch_size == 1
        steps = math.ceil(rows / cfg.batch_size) - int(single)

    def fit(member: RunSpec, checkpoint: Path | None) -> tuple[MultiTaskModel, FitResult]:
        model = build_for(member, encoder)
        extras = _resume_extras(member, encoder, checkpoint, resume)
        seeded = member.training.for_rows(rows)
        trainer = Trainer(model, seeded, progress=progress, checkpoint=checkpoint,
                          extras=extras, device=device)  # batches prefetched off the CPU
        source = StreamEpochs(lambda epoch: shuffle_batches(chunks(), seeded.batch_size,
                                                            spec.buffer_rows, seeded.seed,
                                                            epoch),
                              skip_single_rows=model.config.normalises_batches, steps=steps,
                              rows=rows)
        return model, trainer.fit(source, valid, resume=resume)

    model, result = fit_members(spec, fit, rows, checkpoint, resume, announce)
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


def _claim_output(out: Path, overwrite: bool, resume: bool, stack: ExitStack) -> None:
    """Before training (rank 0, ``out`` checked): hold the run's lock (on ``.DIR.partial``)
    until ``stack`` closes, clean what a killed run left, keep or drop the checkpoint."""
    partial = partial_dir(out)
    _checks.writable_dir(out)  # fail now, not after training
    try:
        stack.enter_context(locked_dir(partial))
    except BlockingIOError:
        _checks.fail(f"another `mmoe train` is writing --out '{out}' (it holds the lock on "
                     f"'{partial}'); wait for it to finish, or choose another --out")
    clean_leftovers(out)  # under the lock: a killed replace puts the old model back
    check_output_dir(out, overwrite)  # again: another run may have finished meanwhile
    checkpoint = partial / CHECKPOINT
    if checkpoint.exists() and not resume and not overwrite:
        _checks.fail(f"an interrupted run of --out '{out}' left a checkpoint in "
                     f"'{partial}'; pass --resume to continue it, or --overwrite to start "
                     "over")
    for entry in partial.iterdir():
        if not resume or entry.name.endswith(".tmp"):  # temp files of a killed write
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def train_model_dir(spec: RunSpec, out: str | os.PathLike, *, overwrite: bool = False,
                    progress: bool | None = None, resume: bool = False,
                    device: str = "auto", announce: Callable[[str], None] | None = None
                    ) -> dict[str, Any]:
    """Train on ``spec`` and write a model directory at ``out``.

    Args:
        spec: what to train (see :func:`~mmoe.app.spec.build_run_spec`).
        out: the model directory to write (refused if it exists and is not empty, unless
            ``overwrite``; it is replaced only after training succeeded).
        overwrite: replace an existing model directory (and discard the checkpoint of an
            interrupted run).
        progress: progress bars (default: when stderr is a terminal).
        resume: continue an interrupted run from its checkpoint (``.DIR.partial``) when one
            exists; start fresh otherwise.
        device: ``auto``, ``cpu`` or ``cuda``. Under ``torchrun`` every rank trains on its
            share of each batch and only rank 0 touches the output directory.
        announce: called (rank 0) with the table of input columns as fitted (kind, width,
            embedding table, and the tasks: :func:`~mmoe.app.schema.schema_text`) before
            training.

    Returns:
        ``metrics.json``'s content.

    Example:
        >>> from mmoe.app.spec import build_run_spec
        >>> demo.to_csv("train.csv", index=False)
        >>> spec = build_run_spec(train="train.csv", tasks=["clicked:binary"], epochs=2)
        >>> sorted(train_model_dir(spec, "runs/m1")["valid"]["clicked"])
        ['auc', 'calibration', 'logloss', 'n']
    """
    main = env_rank() == 0  # under torchrun, only rank 0 touches the output directory
    _checks.check(not (spec.stream and env_world() > 1),
                  "--stream trains in one process; drop --stream to train under torchrun")
    out = Path(os.path.abspath(check_output_dir(out, overwrite)))  # a link: its directory
    with ExitStack() as stack:
        if main:
            _claim_output(out, overwrite, resume, stack)
        return _train_and_save(spec, out, main, progress=progress, resume=resume,
                               device=device, overwrite=overwrite,
                               announce=announce if main else None)


def _train_and_save(spec: RunSpec, out: Path, main: bool, *, progress: bool | None,
                    resume: bool, device: str, overwrite: bool,
                    announce: Callable[[str], None] | None) -> dict[str, Any]:
    """Train (checkpointing to ``.DIR.partial``), then write the model directory (rank 0)."""
    partial = partial_dir(out)
    checkpoint = partial / CHECKPOINT
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
                                           resume=resume, device=device, announce=announce)
    metrics, gates = run_metrics(model, encoder, result, valid)
    if not main:
        return metrics
    write_run_dir(out, spec, model, encoder, result, metrics, gates, overwrite=overwrite)
    shutil.rmtree(partial, ignore_errors=True)  # the run is complete: nothing to resume
    return metrics


def run_metrics(model: MultiTaskModel, encoder: TableEncoder, result: FitResult,
                valid: TensorTable) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A finished run's ``metrics.json`` content (the final validation metrics and the
    per-epoch history, regression in the label's units) and its gate health (``None`` for
    models without gates)."""
    history = _history_in_original_scale(result.history, encoder)
    final, gates = evaluate_table(model, encoder, valid, gates=True)
    speeds = [r["samples_per_s"] for r in history if r.get("samples_per_s")]
    metrics = {"valid": final, "history": history,
               "best_epoch": result.best_epoch, "monitor": result.monitor,
               "epochs_run": len(result.history),
               "valid_rows": len(valid),
               "samples_per_s": float(np.mean(speeds)) if speeds else None}
    if result.members:  # a seed ensemble: "valid" is the ensemble's, the history its first
        metrics["members"] = result.members  # member's
    return metrics, gates


def write_run_dir(out: str | os.PathLike, spec: RunSpec, model: MultiTaskModel,
                  encoder: TableEncoder, result: FitResult, metrics: dict[str, Any],
                  gates: dict[str, Any] | None, *, overwrite: bool = False,
                  config: dict[str, Any] | None = None) -> Path:
    """Write a trained run's model directory: the model, encoder, ``config.json`` (``spec``
    with the training settings as run, plus ``config``'s keys), ``metrics.json``,
    ``schema.json`` and the figures (learning curves; gate utilisation for gated models)."""
    # a seed ensemble's curves and gates are its first member's
    member = f" (member 1 of {len(result.members)})" if result.members else ""

    def extra(stage: Path) -> None:
        write_json(stage / "schema.json", schema(encoder, spec.to_dict()))
        learning_curves(metrics["history"], result.best_epoch,
                        stage / "learning_curves.png",
                        f"{model.config.name}{member}: kept epoch {result.best_epoch} "
                        f"(by {result.monitor})")
        if gates is not None:
            gate_heatmap(utilisation_frame(gates), stage / "gates.png",
                         f"{model.config.name}{member}: mean gate weight on validation rows")
        if spec.tensorboard:
            write_tensorboard(stage / "tensorboard", metrics["history"])

    settings = {**spec.to_dict(), "tasks": [t.to_dict() for t in encoder.tasks],
                "git_commit": git_commit(), **(config or {})}
    if result.config is not None:  # as run: epochs and batch size chosen for the rows
        settings["training"] = result.config.to_dict()
    # as run: the dropouts chosen for the rows
    settings["model"] = {**model.config.to_dict(), "embedding_dim": spec.embedding_dim}
    return save_model_dir(out, model, encoder, settings, metrics, write_extra=extra,
                          overwrite=overwrite)

"""Export a model directory to ONNX or TorchScript, with a parity check against the eager
model run by the export itself.

The exported graph takes the *encoded* inputs -- ``numeric`` (B, n_num) float32, already
standardised, ``categorical`` (B, n_cat) int64 codes and ``ids`` (B, S) int64 table rows of
the lookup columns (hashed ids, sequences; 0 padding) -- exactly as the model directory's
``encoder.json`` produces them (each present only when the model has such columns), and
returns one output per task, named as the task:
binary P(positive) (B,), regression value in the label's scale (B,), multiclass P(class)
(B, C) in ``encoder.json``'s class order; a funnel task (``after``) gives its conditional
probability under its name and the joint as ``<earlier>_and_<task>`` (ESMM's pCTR, pCVR and
pCTCVR).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import _checks
from .._fileio import AtomicFile, write_bytes
from ..data.encoders import TableEncoder
from ..models import MultiTaskModel
from ..models.funnel import output_logits, output_tasks
from ..train.model_dir import ModelDir, load_model_dir, own_files
from .export_raw import raw_onnx
from .predict import predict_frame
from .raw_columns import raw_outputs, raw_sample_frame

FORMATS = ("onnx", "torchscript")
PARITY_ROWS = 64
PARITY_TOL = 1e-5


class ExportWrapper(nn.Module):
    """The model plus its output heads: logits -> per-task predictions (a tuple, task order).

    Shapes:
        numeric (B, n_num) float32 (omitted when n_num = 0), categorical (B, n_cat) int64
        (omitted when n_cat = 0), ids (B, S) int64 (omitted without lookups) -> one tensor
        per task: (B,) or (B, C).
    """

    def __init__(self, model: MultiTaskModel, encoder: TableEncoder):
        super().__init__()
        self.model = model.eval()
        self.has_numeric = model.encoder.num_numeric > 0
        self.has_categorical = model.encoder.num_categorical > 0
        self.has_ids = model.inputs.slots > 0
        tasks, slices = output_tasks(model.tasks, model.task_slices)
        self.tasks = tasks  # the model's tasks, then the funnel's joints
        self.kinds = [t.kind for t in tasks]
        self.slices = [(s.start, s.stop) for s in slices]
        scale = [encoder.label_stats.get(t.name, (0.0, 1.0)) for t in tasks]
        self.register_buffer("label_mean", torch.tensor([m for m, _ in scale]))
        self.register_buffer("label_std", torch.tensor([s for _, s in scale]))

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        given = dict(zip(_input_names(self), inputs, strict=True))
        logits = output_logits(self.model(given.get("numeric"), given.get("categorical"),
                                          given.get("ids")),
                               self.model.tasks, self.model.task_slices,
                               self.model.funnel.joint)  # (B, O + J)
        outs = []
        for t, (kind, (a, b)) in enumerate(zip(self.kinds, self.slices, strict=True)):
            z = logits[:, a:b]
            if kind == "binary":
                outs.append(torch.sigmoid(z[:, 0]))  # (B,)
            elif kind == "regression":
                outs.append(z[:, 0] * self.label_std[t] + self.label_mean[t])  # (B,)
            else:
                outs.append(torch.softmax(z, dim=1))  # (B, C)
        return tuple(outs)


def sample_inputs(model: MultiTaskModel, rows: int = PARITY_ROWS,
                  seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random encoded inputs covering every categorical code range (parity checks)."""
    gen = torch.Generator().manual_seed(seed)
    inputs = []
    if model.encoder.num_numeric:
        inputs.append(torch.randn(rows, model.encoder.num_numeric, generator=gen))
    if model.encoder.num_categorical:
        cards = torch.tensor([c for _, c in model.inputs.categorical])  # (n_cat,)
        u = torch.rand(rows, len(cards), generator=gen)
        inputs.append((u * cards).long().clamp_max(cards - 1))  # (B, n_cat) in [0, card)
    if model.inputs.lookups:
        sizes = torch.tensor([lk.rows for lk in model.inputs.lookups
                              for _ in range(lk.slots)])  # (S,) each slot's table rows
        u = torch.rand(rows, len(sizes), generator=gen)
        ids = (u * sizes).long().clamp_max(sizes - 1)  # (B, S) in [0, rows): 0 is padding
        ids[torch.rand(rows, len(sizes), generator=gen) < 0.3] = 0  # short sequences
        inputs.append(ids)
    return tuple(inputs)


def _input_names(wrapper: ExportWrapper) -> list[str]:
    return (["numeric"] if wrapper.has_numeric else []) + \
        (["categorical"] if wrapper.has_categorical else []) + \
        (["ids"] if wrapper.has_ids else [])


def _export_onnx(wrapper: ExportWrapper, inputs: tuple[torch.Tensor, ...], names: list[str],
                 path: Path) -> list[np.ndarray]:
    try:
        import onnxruntime as ort
    except ImportError:
        _checks.fail("ONNX export needs onnx and onnxruntime: pip install 'mmoe[export]'")
    in_names = _input_names(wrapper)
    axes = {n: {0: "batch"} for n in in_names + names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, inputs, str(path), dynamo=False, input_names=in_names,
                          output_names=names, dynamic_axes=axes, opset_version=17)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = [o.name for o in session.get_outputs()]
    _checks.check(got == names, f"ONNX outputs are named {got}, expected the task names {names}")
    return session.run(names, {n: x.numpy() for n, x in zip(in_names, inputs, strict=True)})


def _export_torchscript(wrapper: ExportWrapper, inputs: tuple[torch.Tensor, ...],
                        path: Path) -> list[np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, inputs, check_trace=False)
        traced.save(str(path))
        loaded = torch.jit.load(str(path))
    with torch.inference_mode():
        return [o.numpy() for o in loaded(*inputs)]


def _parity_diff(encoder: TableEncoder, task: str, eager: np.ndarray,
                 exported: np.ndarray) -> float:
    """Max abs difference; regression in standardised units (a float32 value near 1e3 has
    a resolution of 6e-5, so the label scale would hide or invent differences)."""
    std = encoder.label_stats.get(task, (0.0, 1.0))[1]
    return float(np.max(np.abs(eager.astype(np.float64) - exported))) / std


def export_model(model_dir: str | os.PathLike, fmt: str, out: str | os.PathLike,
                 raw: bool = False) -> float:
    """Export a model directory; the file is written only if parity holds.

    Args:
        model_dir: a directory written by `mmoe train`.
        fmt: ``onnx`` or ``torchscript``.
        out: the file to write (replaced atomically); never one of ``model_dir``'s own.
        raw: ONNX only: a graph taking the raw columns, its parity checked against
            `mmoe predict` on sample rows (:mod:`mmoe.app.export_raw`).

    Returns:
        The max absolute difference between the exported and the eager model's outputs on
        sample rows (regression in standardised units; <= 1e-5, else ``ValueError`` and
        nothing is written).

    Example:
        >>> export_model(model_dir, "torchscript", "m1.pt") <= 1e-5
        True
    """
    _checks.one_of(fmt, FORMATS, "--format")
    _checks.output_apart(out, own_files(model_dir))
    _checks.check(not Path(out).is_dir(), f"--out '{out}' is a directory; give a file name")
    md = load_model_dir(model_dir)
    if raw:
        _checks.check(fmt == "onnx", "--raw needs --format onnx (TorchScript takes tensors)")
        return _export_raw(md, Path(out))
    wrapper = ExportWrapper(md.model, md.encoder).eval()
    names = [t.name for t in wrapper.tasks]
    # Different batch sizes for tracing and checking prove the batch axis is dynamic.
    trace_inputs = sample_inputs(md.model, 8, seed=1)
    check_inputs = sample_inputs(md.model, PARITY_ROWS, seed=0)
    out = Path(out)
    target = AtomicFile(out)
    target.handle.close()  # the exporters write by name
    tmp = target.tmp
    try:
        if fmt == "onnx":
            _export_onnx(wrapper, trace_inputs, names, tmp)
            import onnxruntime as ort

            session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            feeds = {n: x.numpy() for n, x in zip(_input_names(wrapper), check_inputs,
                                                  strict=True)}
            exported = session.run(names, feeds)
        else:
            _export_torchscript(wrapper, trace_inputs, tmp)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = torch.jit.load(str(tmp))
            with torch.inference_mode():
                exported = [o.numpy() for o in loaded(*check_inputs)]
        with torch.inference_mode():
            eager = [o.numpy() for o in wrapper(*check_inputs)]
        diff = max(_parity_diff(md.encoder, task.name, e, x)
                   for task, e, x in zip(wrapper.tasks, eager, exported, strict=True))
        _checks.check(diff <= PARITY_TOL, f"export parity check failed: the {fmt} model differs "
                      f"from the eager model by {diff:.3g} (> {PARITY_TOL}); nothing written "
                      f"to '{out}'")
    except BaseException:
        target.abort()
        raise
    target.commit()
    return diff


def _export_raw(md: ModelDir, out: Path) -> float:
    """The raw-column graph of ``md`` (:func:`raw_session`), written to ``out`` only when its
    parity check holds."""
    proto, _, diff = raw_session(md, where=f"nothing written to '{out}'")
    write_bytes(out, proto.SerializeToString())
    return diff


def raw_session(md: ModelDir, threads: int = 1, where: str = "") -> tuple[Any, Any, float]:
    """The raw-column ONNX graph of a model directory, an onnxruntime session on it, and the
    parity it was checked to: on sample rows (unseen and missing values included) it answers
    as `mmoe predict` does, probabilities and regression values (in standardised units)
    within ``PARITY_TOL``, labels equal; else ``ValueError`` (ending in ``where``)."""
    try:
        import onnxruntime as ort
    except ImportError:
        _checks.fail("ONNX export needs onnx and onnxruntime: pip install 'mmoe[export]'")
    proto = raw_onnx(md.model, md.encoder)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    check = raw_sample_frame(md.encoder, PARITY_ROWS, seed=0)
    got = raw_outputs(session, md.encoder, check)
    want = predict_frame(md.model, md.encoder, check)
    _checks.check(list(got.columns) == list(want.columns), "raw export: the graph's outputs "
                  f"{list(got.columns)} differ from mmoe predict's {list(want.columns)}")
    diff = 0.0
    for col in want.columns:
        if not pd.api.types.is_numeric_dtype(want[col].dtype):
            same = (got[col].astype(str).to_numpy() == want[col].astype(str).to_numpy()).all()
            _checks.check(bool(same), f"raw export parity check failed: labels of '{col}' "
                          f"differ from mmoe predict's; {where}")
        else:
            diff = max(diff, _parity_diff(md.encoder, col, want[col].to_numpy(),
                                          got[col].to_numpy()))
    _checks.check(diff <= PARITY_TOL, f"raw export parity check failed: the graph differs "
                  f"from mmoe predict by {diff:.3g} (> {PARITY_TOL}); {where}")
    return proto, session, diff

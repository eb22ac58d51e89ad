"""ONNX export of the whole pipeline: raw columns in, each task's answer in the label's own
units out (`mmoe export DIR --format onnx --raw`), so that onnxruntime alone serves a model
and nobody re-implements ``encoder.json`` in another language.

Inputs, one per input column, each of shape (B,):

- a numeric column: ``double``, NaN for a missing value (imputed and flagged inside);
- a categorical column (plain, or a looked-up one with its own table): ``string``, spelt as
  mmoe keys values (``"3"`` for 3 or 3.0, ``"true"`` / ``"false"`` for booleans), ``""`` for
  a missing value; an unseen value takes the out-of-vocabulary code, as in `mmoe predict`;
- a sequence column (over a vocabulary): ``string``, its ids joined by the column's delimiter
  (``"12|7|93"``, oldest first; ``""`` for none); the graph splits it (``StringSplit``),
  looks each id up and keeps the last ``max_len``.

Outputs, named as `mmoe predict`'s columns: a binary task's P(positive) ``<task>`` (float)
and its label at 0.5 ``<task>_label`` (string); a multiclass task's class ``<task>``
(string) and ``<task>_proba`` (B, C) in ``classes`` order; a regression task's value
``<task>`` (double, in the label's units); a funnel step's conditional probability and the
joint ``<earlier>_and_<task>``.

Inside: the numeric encodings (standardisation, the quantile-normal transform, piecewise-
linear bins) are torch operations exported by ``torch.onnx`` with the model; the text-to-code
lookups and code-to-label decodings are the ``ai.onnx.ml`` ``LabelEncoder`` operator, joined
to that graph. What cannot be expressed with standard operators is refused (see
:data:`NOT_EXPRESSIBLE`).
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import _checks
from ..data.encoders import TableEncoder
from ..data.numeric import _CLIP
from ..models import MultiTaskModel
from ..models.funnel import output_logits, output_tasks
from .raw_columns import raw_feeds, raw_sample_frame

#: the lookup kinds a raw graph cannot compute, and why
NOT_EXPRESSIBLE = {
    "hashed": "its rows are SipHash-2-4 of the id's text, which no standard ONNX operator "
              "computes",
}
OPSET, ML_OPSET = 20, 2  # 20: StringSplit

# Acklam's rational approximation of the normal quantile (relative error < 1.2e-9)
_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
      1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
      6.680131188771972e01, -1.328068155288572e01, 1.0)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
      -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
      3.754408661907416e00, 1.0)
_P_LOW = 0.02425


def _poly(coefs: tuple[float, ...], x: torch.Tensor) -> torch.Tensor:
    out = torch.full_like(x, coefs[0])
    for c in coefs[1:]:
        out = out * x + c
    return out


def ndtri(p: torch.Tensor) -> torch.Tensor:
    """The standard normal quantile Φ⁻¹(p) for p in (0, 1), in exportable torch operations.

    Example:
        >>> round(float(ndtri(torch.tensor([0.975], dtype=torch.float64))), 6)
        1.959964
    """
    q = p - 0.5
    r = q * q
    central = _poly(_A, r) * q / _poly(_B, r)
    tail_p = torch.where(p < 0.5, p, 1.0 - p)
    t = torch.sqrt(-2.0 * torch.log(tail_p))
    tail = _poly(_C, t) / _poly(_D, t)  # the lower tail's (negative) value
    tail = torch.where(p < 0.5, tail, -tail)
    return torch.where((p >= _P_LOW) & (p <= 1.0 - _P_LOW), central, tail)


class RawNumeric(nn.Module):
    """The fitted numeric encodings of a :class:`TableEncoder`, in torch operations:
    raw (B, n) float64 with NaN for missing -> the encoded (B, width) float32 of
    ``TableEncoder.transform`` (each column's encoding, then the missing indicators)."""

    def __init__(self, encoder: TableEncoder):
        super().__init__()
        self.columns = list(encoder.numeric)
        self.kinds = []
        for j, col in enumerate(self.columns):
            enc = encoder.encodings[col]
            points = torch.tensor(enc.points, dtype=torch.float64)
            kind = enc.kind if enc.kind != "ple" or len(points) >= 2 else "empty"
            kind = "standard" if kind == "periodic" else kind  # the model embeds the z-score
            self.kinds.append(kind)
            if kind == "standard":
                self.register_buffer(f"p{j}", torch.tensor([enc.mean, enc.std],
                                                           dtype=torch.float64))
            elif kind == "quantile":
                ranks = torch.linspace(0.0, 1.0, len(points), dtype=torch.float64)
                self.register_buffer(f"p{j}", points)  # knots q_i
                self.register_buffer(f"r{j}", ranks)
            elif kind == "ple":
                self.register_buffer(f"p{j}", points)
        self.indicators = [self.columns.index(c) for c in encoder.indicators]

    def _quantile(self, x: torch.Tensor, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """np.interp over the knots, ties at the middle of their ranks (the numpy path's mean
        of the interpolations from below and above), then Φ⁻¹."""
        lo, dq, dr = q[:-1], q[1:] - q[:-1], r[1:] - r[:-1]  # segments (K-1,)
        xs = x[:, None]  # (B, 1)
        along = torch.clamp((xs - lo) / torch.where(dq > 0, dq, torch.ones_like(dq)), 0.0, 1.0)
        step = 0.5 * ((xs > lo).double() + (xs >= lo).double())  # a tie: a jump
        rank = r[0] + (dr * torch.where(dq > 0, along, step)).sum(1)
        return ndtri(torch.clamp(rank, _CLIP, 1.0 - _CLIP))[:, None]

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        cols = []
        for j, kind in enumerate(self.kinds):
            missing = torch.isnan(raw[:, j])
            x = torch.where(missing, torch.zeros_like(raw[:, j]), raw[:, j])  # (B,)
            if kind == "standard":
                p = getattr(self, f"p{j}")
                out = ((x - p[0]) / p[1])[:, None]
            elif kind == "quantile":
                out = self._quantile(x, getattr(self, f"p{j}"), getattr(self, f"r{j}"))
            elif kind == "ple":
                edges = getattr(self, f"p{j}")
                out = torch.clamp((x[:, None] - edges[:-1]) / (edges[1:] - edges[:-1]),
                                  0.0, 1.0)
            else:
                out = torch.zeros_like(x)[:, None]
            cols.append(torch.where(missing[:, None], torch.zeros_like(out), out))
        cols += [torch.isnan(raw[:, j]).double()[:, None] for j in self.indicators]
        return torch.cat(cols, dim=1).float()


class RawWrapper(nn.Module):
    """Encoded codes and raw numbers -> every output of the raw graph (a classification
    task's class as an index, decoded to its label by the graph's tail).

    Shapes: numeric (B, n) float64, categorical (B, n_cat) int64 (each present only when
    the model has such columns), then per lookup column its table rows: (B, 1) for one id,
    (B, W) and the count of ids (B,) for a sequence (W: the most ids of a row in the batch)
    -> per output (B,) or (B, C).
    """

    def __init__(self, model: MultiTaskModel, encoder: TableEncoder):
        super().__init__()
        self.model = model.eval()
        self.numeric = RawNumeric(encoder) if encoder.numeric else None
        self.has_categorical = model.encoder.num_categorical > 0
        # per lookup column: None (one id) or max_len (a sequence)
        self.lookups = [lk.slots if spec.kind == "sequence" else None for spec, lk in zip(
            encoder.lookup.specs.values(), model.inputs.lookups, strict=True)
        ] if encoder.lookup is not None else []
        self.tasks, slices = output_tasks(model.tasks, model.task_slices)
        self.slices = [(s.start, s.stop) for s in slices]
        scale = [encoder.label_stats.get(t.name, (0.0, 1.0)) for t in self.tasks]
        self.register_buffer("label_mean", torch.tensor([m for m, _ in scale],
                                                        dtype=torch.float64))
        self.register_buffer("label_std", torch.tensor([s for _, s in scale],
                                                       dtype=torch.float64))

    def input_names(self) -> list[str]:
        names = ([] if self.numeric is None else ["numeric"]) + \
            (["categorical"] if self.has_categorical else [])
        for j, max_len in enumerate(self.lookups):
            names += [f"lookup{j}"] + ([] if max_len is None else [f"lookup{j}_count"])
        return names

    def output_names(self) -> list[str]:
        """The torch graph's outputs: ``<task>`` values, ``<task>__index`` class indices."""
        names = []
        for task in self.tasks:
            names.append(task.name if task.kind != "multiclass" else f"{task.name}_proba")
            if task.kind == "multiclass" or (task.kind == "binary" and task.classes):
                names.append(f"{task.name}__index")
        return names

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        given = dict(zip(self.input_names(), inputs, strict=True))
        numeric = None if self.numeric is None else self.numeric(given["numeric"])
        slots = [given[f"lookup{j}"] if max_len is None else
                 _recent(given[f"lookup{j}"], given[f"lookup{j}_count"], max_len)
                 for j, max_len in enumerate(self.lookups)]
        ids = torch.cat(slots, dim=1) if slots else None  # (B, S)
        logits = output_logits(self.model(numeric, given.get("categorical"), ids),
                               self.model.tasks, self.model.task_slices,
                               self.model.funnel.joint)  # (B, O + J)
        outs: list[torch.Tensor] = []
        for t, (task, (a, b)) in enumerate(zip(self.tasks, self.slices, strict=True)):
            z = logits[:, a:b]
            if task.kind == "regression":
                outs.append(z[:, 0].double() * self.label_std[t] + self.label_mean[t])
            elif task.kind == "binary":
                p = torch.sigmoid(z[:, 0])
                outs.append(p)
                if task.classes:
                    outs.append((p >= 0.5).long())
            else:
                proba = torch.softmax(z, dim=1)
                outs += [proba, proba.argmax(dim=1)]
        return tuple(outs)


def _recent(rows: torch.Tensor, count: torch.Tensor, max_len: int) -> torch.Tensor:
    """Each row's last ``max_len`` ids, oldest first, 0-padded, as
    :func:`mmoe.data.ids.recent_slots`: rows (B, W), count (B,) -> (B, max_len)."""
    padded = torch.cat([rows, rows.new_zeros(rows.shape[0], max_len)], dim=1)  # W + L wide
    start = torch.clamp(count - max_len, min=0)[:, None]  # (B, 1)
    index = start + torch.arange(max_len)[None, :]  # (B, L): < W + L always
    kept = torch.gather(padded, 1, index)
    return torch.where(index < count[:, None], kept, torch.zeros_like(kept))


def check_expressible(encoder: TableEncoder) -> None:
    """Refuse, in one line, an encoder whose columns a raw graph cannot encode."""
    if encoder.lookup is None:
        return
    for spec in encoder.lookup.specs.values():
        owner = encoder.lookup.owner(spec.name)
        what = "hashed" if spec.kind == "hashed" else f"{spec.kind} over hashed ids"
        _checks.check(not encoder.lookup.hashes(owner), f"--raw: column '{spec.name}' is a "
                      f"{what} column: {NOT_EXPRESSIBLE['hashed']}; export without --raw "
                      "(encoded inputs) and hash in the caller, or serve with `mmoe serve`")


def _torch_graph(wrapper: RawWrapper, samples: tuple[torch.Tensor, ...]) -> Any:
    import onnx

    buf = io.BytesIO()
    names = wrapper.input_names()
    outs = wrapper.output_names()
    axes = {n: {0: "batch"} for n in names + outs}
    for j, max_len in enumerate(wrapper.lookups):
        if max_len is not None:  # a sequence: as many ids as the batch's longest row
            axes[f"lookup{j}"] = {0: "batch", 1: f"ids{j}"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, samples, buf, dynamo=False, input_names=names,
                          output_names=outs, dynamic_axes=axes, opset_version=OPSET)
    return onnx.load_from_string(buf.getvalue())


def _samples(wrapper: RawWrapper, encoder: TableEncoder) -> tuple[torch.Tensor, ...]:
    """Inputs of ``wrapper`` for 8 sample rows, to trace it with."""
    frame = raw_sample_frame(encoder, 8, seed=1)
    table = encoder.transform(frame, labels=False)
    feeds = raw_feeds(encoder, frame)
    out = [torch.from_numpy(np.stack([feeds[c] for c in encoder.numeric], 1))
           ] if encoder.numeric else []
    out += [table.categorical] if table.categorical is not None else []
    start = 0
    for max_len in wrapper.lookups:
        width = 1 if max_len is None else max_len
        out.append(table.ids[:, start:start + width])
        if max_len is not None:
            out.append(torch.full((len(frame),), max_len, dtype=torch.int64))
        start += width
    return tuple(out)


def raw_onnx(model: MultiTaskModel, encoder: TableEncoder) -> Any:
    """The raw-column ONNX model (an ``onnx.ModelProto``) of a trained model and its
    encoder."""
    from onnx import TensorProto, helper, numpy_helper

    check_expressible(encoder)
    wrapper = RawWrapper(model, encoder).eval()
    proto = _torch_graph(wrapper, _samples(wrapper, encoder))
    graph = proto.graph
    head, inputs = [], []
    axis1 = "raw__axis1"
    graph.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), axis1))

    def column(name: str, elem: int) -> str:
        inputs.append(helper.make_tensor_value_info(name, elem, ["batch"]))
        return name

    def stack(parts: list[str], target: str) -> None:
        cols = []
        for part in parts:
            head.append(helper.make_node("Unsqueeze", [part, axis1], [f"{part}__col"]))
            cols.append(f"{part}__col")
        head.append(helper.make_node("Concat", cols, [target], axis=1))

    def codes(text: str, values: list[str], offset: int, unknown: int, missing: int | None,
              target: str) -> str:
        keys, rows = list(values), [offset + i for i in range(len(values))]
        if missing is not None and "" not in keys:
            keys, rows = keys + [""], rows + [missing]
        head.append(helper.make_node("LabelEncoder", [text], [target], domain="ai.onnx.ml",
                                     keys_strings=keys, values_int64s=rows,
                                     default_int64=unknown))
        return target

    if encoder.numeric:
        stack([column(c, TensorProto.DOUBLE) for c in encoder.numeric], "numeric")
    if encoder.categorical:  # unseen and missing: 0 (out of vocabulary)
        stack([codes(column(c, TensorProto.STRING), encoder.vocab[c], 1, 0, None,
                     f"{c}__code") for c in encoder.categorical], "categorical")
    for j, spec in enumerate(encoder.lookup.specs.values() if encoder.lookup else ()):
        vocab = encoder.lookup.vocab[encoder.lookup.owner(spec.name).name]
        text = column(spec.name, TensorProto.STRING)  # rows: 2 + index, unseen 1, missing 0
        if spec.kind != "sequence":
            head.append(helper.make_node("Unsqueeze", [codes(text, vocab, 2, 1, 0,
                                                             f"{text}__code"), axis1],
                                         [f"lookup{j}"]))
            continue
        head.append(helper.make_node("StringSplit", [text], [f"{text}__ids",
                                                             f"lookup{j}_count"],
                                     delimiter=spec.delimiter))
        codes(f"{text}__ids", vocab, 2, 1, 0, f"lookup{j}")
    tail, outputs = [], []
    values = {o.name: o for o in graph.output}
    for task in wrapper.tasks:  # in `mmoe predict`'s column order
        decoded = (f"{task.name}_label" if task.kind == "binary" and task.classes
                   else task.name if task.kind == "multiclass" else None)
        if task.kind != "multiclass":
            outputs.append(values[task.name])
        if decoded is not None:
            tail.append(helper.make_node(
                "LabelEncoder", [f"{task.name}__index"], [decoded], domain="ai.onnx.ml",
                keys_int64s=list(range(len(task.classes))),
                values_strings=[str(c) for c in task.classes], default_string=""))
            outputs.append(helper.make_tensor_value_info(decoded, TensorProto.STRING,
                                                         ["batch"]))
        if task.kind == "multiclass":
            outputs.append(values[f"{task.name}_proba"])
    new_graph = helper.make_graph(head + list(graph.node) + tail, "mmoe_raw", inputs, outputs,
                                  list(graph.initializer))
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]
    out = helper.make_model(new_graph, opset_imports=opsets, producer_name="mmoe")
    out.ir_version = proto.ir_version
    return out

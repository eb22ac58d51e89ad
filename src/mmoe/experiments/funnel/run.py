"""`mmoe reproduce funnel`: every funnel model on the generated impression log, R seeds each,
scored against the generator's true probabilities.

The data: :mod:`mmoe.data.datasets.funnel` (default 500k impressions, 30k users, 8k items;
time-split train/valid/test), with the tasks ``click`` and ``purchase`` after ``click``.
Every model shares one shape (embeddings as the generator's config states them; experts or
per-task networks of ``UNITS``, towers of ``TOWER``, Adam, batch 1024) and is trained for
``epochs`` epochs keeping the epoch with the best validation click AUC. The models:

- ``single_task``, ``shared_bottom``, ``mmoe``, ``ple``: purchase learnt as the conditional
  P(purchase | click) on clicked rows only (sample selection bias: the BASE of ESMM);
- ``esmm`` (over shared embeddings and per-task networks, the paper's) and ``esmm_mmoe``
  (the same head over MMoE experts): the joint pCTR * pCVR on every impression;
- ``aitm``: information transfer from click to purchase and the calibrator.

Scored on test: click (all rows); purchase given click (its conditional, on clicked rows);
click-and-purchase (the joint, on all rows); and the entire-space CVR: the conditional on
every impression against its true probability q (each row counted positive with weight q
and negative with weight 1 - q: the AUC the model would have if every impression had been
clicked), which is where sample selection bias shows. The oracle (the true probabilities)
is the ceiling of each.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit, logit
from sklearn.metrics import roc_auc_score

from ... import _checks
from ..._fileio import write_json
from ...app.spec import RunSpec, build_run_spec
from ...app.tables import read_run_tables, text_columns, with_groups
from ...config import ModelConfig, TaskSpec, TrainConfig
from ...data.datasets.funnel import FunnelSpec, generate_funnel
from ...data.readers import read_table
from ...metrics import evaluate
from ...models import build_model
from ...models.funnel import output_view
from ...train import Trainer
from ...train.evaluation import predict_logits

UNITS, EXPERTS, TOWER = (64, 32), 4, (16,)
#: the models and their configurations (one shape for all)
MODELS: dict[str, ModelConfig] = {
    "single_task": ModelConfig("single_task", expert_units=UNITS, tower_units=TOWER),
    "shared_bottom": ModelConfig("shared_bottom", expert_units=UNITS, tower_units=TOWER),
    "mmoe": ModelConfig("mmoe", expert_units=UNITS, num_experts=EXPERTS, tower_units=TOWER),
    "ple": ModelConfig("ple", expert_units=UNITS, num_experts=EXPERTS, tower_units=TOWER,
                       options={"task_experts": 1, "shared_experts": 2, "levels": 2}),
    "esmm": ModelConfig("esmm", expert_units=UNITS, tower_units=TOWER),
    "esmm_mmoe": ModelConfig("esmm", expert_units=UNITS, num_experts=EXPERTS,
                             tower_units=TOWER, options={"bottom": "mmoe"}),
    "aitm": ModelConfig("aitm", expert_units=UNITS, tower_units=TOWER),
}
TASKS = ("click:binary:1", "purchase:binary:1:after=click")
#: output -> the column of its true probability
TRUTH = {"click": "p_click", "purchase": "p_buy_given_click",
         "click_and_purchase": "p_click_buy"}
METRICS = ("auc", "gauc", "calibration", "logloss")


@dataclass
class FunnelConfig:
    """Settings of `mmoe reproduce funnel` (see the module docstring): the generated world
    (its seed is also the first run's), the runs and their training."""

    world: FunnelSpec = field(default_factory=lambda: FunnelSpec(rows=500_000))
    runs: int = 3
    epochs: int = 2
    batch_size: int = 1024
    lr: float = 1e-3
    threads: int = 2
    models: tuple[str, ...] = tuple(MODELS)
    data: str | None = None  # a generated funnel directory to reuse

    def __post_init__(self) -> None:
        for name in ("runs", "epochs", "batch_size", "threads"):
            _checks.positive_int(getattr(self, name), name)
        unknown = [m for m in self.models if m not in MODELS]
        _checks.check(not unknown, f"unknown funnel model(s) {unknown}; choose from "
                      f"{', '.join(MODELS)}")


def entire_space_auc(pred: np.ndarray, truth: np.ndarray) -> float:
    """The expected AUC of ``pred`` if every row's label were drawn with probability
    ``truth``: each row a positive of weight q and a negative of weight 1 - q.

    Example:
        >>> q = np.array([0.1, 0.5, 0.9])
        >>> round(entire_space_auc(q, q), 4) == round(entire_space_auc(q ** 2, q), 4)
        True
    """
    n = len(pred)
    labels = np.r_[np.ones(n), np.zeros(n)]
    return float(roc_auc_score(labels, np.r_[pred, pred], sample_weight=np.r_[truth, 1 - truth]))


def score(view_tasks: Sequence[TaskSpec], view_slices: Sequence[slice], logits: np.ndarray,
          labels: np.ndarray, groups: np.ndarray, truth: np.ndarray) -> dict[str, dict]:
    """Metrics of one set of output logits (the view of :meth:`MultiTaskModel.outputs`)."""
    res = evaluate(view_tasks, view_slices, logits, labels, groups=groups)
    out = {name: {m: res[name][m] for m in METRICS} for name in TRUTH}
    cvr, q = expit(logits[:, 1].astype(np.float64)), truth[:, 1]
    out["cvr_entire_space"] = {"auc": entire_space_auc(cvr, q),
                               "calibration": float(cvr.mean() / q.mean())}
    return out


def _data(cfg: FunnelConfig, out: Path, log: Callable[[str], None]) -> Path:
    if cfg.data:
        return Path(cfg.data)
    path = out / "data"
    if (path / "generator.json").exists():
        log(f"reusing {path}")
        return path
    log(f"generating {cfg.world.rows:,} impressions into {path}")
    return generate_funnel(cfg.world, path)


def _run_spec(cfg: FunnelConfig, data: Path) -> RunSpec:
    # numbers standardised, as when docs/funnels.md was measured
    return build_run_spec(str(data / "mmoe.toml"), train=str(data / "train"),
                          valid=str(data / "valid"), tasks=list(TASKS),
                          numeric_encoding="standard")


def run_funnel(cfg: FunnelConfig, out: str | os.PathLike,
               log: Callable[[str], None] = print) -> dict:
    """Train and score every model ``cfg.runs`` times; write ``results.json``,
    ``report.md`` and ``funnel.png`` into ``out``; return the results."""
    from .report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    data = _data(cfg, out, log)
    spec = _run_spec(cfg, data)
    encoder, train, valid = read_run_tables(spec)
    test_df = read_table(data / "test", categorical=text_columns(spec))
    test = with_groups(encoder.transform(test_df), test_df, "user_id")
    groups = test.groups.numpy()
    truth = test_df[list(TRUTH.values())].to_numpy(np.float64)
    clip = np.clip(truth, 1e-12, 1 - 1e-12)
    slices = tuple(slice(t, t + 1) for t in range(len(encoder.tasks)))  # binary tasks
    view = output_view(encoder.tasks, slices, np.zeros((len(test_df), len(slices)), np.float32),
                       test.labels.numpy(), joint=False)
    oracle = score(view.tasks, view.slices, logit(clip), view.labels, groups, truth)
    runs = []
    for name in cfg.models:
        for r in range(cfg.runs):
            seed = cfg.world.seed + r
            torch.manual_seed(seed)
            model = build_model(MODELS[name], encoder.input_spec(spec.embedding_dim),
                                encoder.tasks)
            train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                                    seed=seed, threads=cfg.threads, restore_best=True,
                                    lr_schedule="constant", monitor=encoder.tasks[0].name,
                                    loss_weighting="static")  # the summed loss, at any size
            start = time.perf_counter()
            Trainer(model, train_cfg, progress=False).fit(train, valid)
            seconds = time.perf_counter() - start
            v = model.outputs(predict_logits(model, test).numpy(), test.labels.numpy())
            metrics = score(v.tasks, v.slices, v.logits, v.labels, groups, truth)
            runs.append({"model": name, "seed": seed, "seconds": seconds, "test": metrics})
            log(f"{name:13s} seed {seed}: click AUC {metrics['click']['auc']:.4f}, purchase|"
                f"click {metrics['purchase']['auc']:.4f}, click&purchase "
                f"{metrics['click_and_purchase']['auc']:.4f}, entire-space CVR "
                f"{metrics['cvr_entire_space']['auc']:.4f} ({seconds:.0f} s)")
    results = {"config": {**{k: v for k, v in vars(cfg).items() if k != "world"},
                          "world": asdict(cfg.world),
                          "models": {m: MODELS[m].to_dict() for m in cfg.models},
                          "tasks": list(TASKS), "data": str(data),
                          "train_rows": len(train), "test_rows": len(test_df)},
               "oracle": oracle, "runs": runs}
    write_json(out / "results.json", results)
    write_report(results, out)
    return results

"""``MultiTaskEstimator``: the library as a scikit-learn estimator.

Hyperparameters (the tasks among them) are constructor arguments stored unchanged, so
``get_params``, ``set_params``, ``clone``, ``Pipeline``, ``GridSearchCV`` and
``cross_val_score`` work; everything learnt by :meth:`~MultiTaskEstimator.fit` lives in
attributes ending in ``_``. scikit-learn's own estimator checks run in the test suite
(``tests/app/test_sklearn_checks.py``, which says why each check that cannot apply to a
multi-task estimator does not).

Inputs and outputs follow the data: DataFrames in, DataFrames out (one column per task,
indexed like ``X``); arrays in, arrays out (1-D for one task).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .. import _checks
from ..config import FeatureSpec, ModelConfig, TaskSpec
from ..metrics import combined_score
from ..train import FitResult, Trainer
from ..train.model_dir import load_model_dir
from .ensemble import fit_members
from .estimator_data import (
    WEIGHT_COLUMN,
    as_frame,
    infer_task,
    label_frame,
    original_classes,
    sample_weights,
    str_columns,
)
from .fit import build_for, for_rows, run_metrics, write_run_dir
from .predict import evaluate_table, predict_frame
from .spec import (
    DEFAULT_MODEL,
    DEFAULT_TRAINING,
    RunSpec,
    build_run_spec,
    parse_feature,
    parse_task,
)
from .tables import check_columns, holdout, make_encoder, with_groups


class MultiTaskEstimator(BaseEstimator):
    """A multi-task model (MMoE by default) on a table: one label column per task.

    Args:
        model: registered model name (``mmoe``, ``omoe``, ``shared_bottom``, ``ple``...).
        tasks: ``"COLUMN:KIND[:POSITIVE]"`` strings, dicts or :class:`TaskSpec` objects naming
            label columns (of ``X`` when ``fit`` gets no ``y``, else of ``y``). ``None``: a
            task per column of ``y``, its kind inferred (two values: binary, the greater one
            positive; integers or text: multiclass; floats: regression).
        num_experts, expert_units, tower_units, embedding_dim, dropout, batch_norm,
            hidden_norm, wide, cross, options: model shape (``wide``, ``cross``: for hashed
            ids and sequences, see :class:`~mmoe.config.ModelConfig`; ``options``:
            model-specific settings, see ``mmoe models``; ``None`` dropout: 0.1 in the
            experts, towers and gates for 10,001 to 500,000 training rows, else 0, as
            :meth:`~mmoe.config.ModelConfig.for_rows`).
        epochs, batch_size, lr, lr_schedule, warmup, weight_decay, monitor, patience,
            precision, seed, threads, ensemble: training, as
            :class:`~mmoe.config.TrainConfig` (``None`` epochs or batch size: chosen from the
            number of rows, as `mmoe train` does; ``ensemble`` K: K models from seeds
            seed..seed+K-1, predicting with the mean of their logits; ``None``: five for at
            most 10,000 training rows, else one).
        device: ``auto`` (a CUDA GPU when one is visible), ``cpu`` or ``cuda``.
        valid_fraction: share of the rows held out for early stopping and the choice of the
            best epoch (when ``fit`` gets no ``valid``).
        numeric, categorical: column type overrides (``None``: inferred).
        numeric_encoding: ``auto``, ``standard``, ``quantile``, ``ple`` or ``periodic``.
        features: :class:`~mmoe.config.FeatureSpec` objects or ``NAME:KIND[:KEY=VALUE,...]``
            strings stating columns exactly (hashed ids, sequences, shared tables).
        group_by: column grouping rows (users) for GAUC, NDCG@10 and MRR in the validation
            metrics and :meth:`evaluate`.
        id_columns, exclude: columns never used as inputs.
        weight_column: a column of per-row weights in ``X`` (or pass ``sample_weight``).
        verbose: progress bars.

    Attributes (after fit):
        model_: the trained :class:`~mmoe.models.MultiTaskModel`.
        encoder_: the fitted :class:`~mmoe.data.encoders.TableEncoder`.
        tasks_: the tasks with their learnt labels and classes.
        classes_: ``{task: classes}`` of each classification task, in output order and as
            the labels spell them.
        n_features_in_: the number of columns of ``X`` at fit; ``feature_names_in_`` their
            names (only when ``X`` was a DataFrame with string column names).
        history_: per-epoch training losses and validation metrics (in the labels' units).
        best_epoch_: the epoch whose weights the model holds.
        valid_metrics_: per-task metrics on the validation rows at the end.

    Example:
        >>> est = MultiTaskEstimator(tasks=["clicked:binary", "hours:regression"], epochs=2,
        ...                          id_columns=["user_id"]).fit(demo)
        >>> est.predict_proba(demo).columns.tolist(), est.classes_["clicked"].tolist()
        (['clicked'], [0, 1])
    """

    def __init__(self, model: str = "mmoe", *,
                 tasks: Sequence[str | TaskSpec | dict] | None = None,
                 num_experts: int = DEFAULT_MODEL.num_experts,
                 expert_units: tuple[int, ...] = DEFAULT_MODEL.expert_units,
                 tower_units: tuple[int, ...] = DEFAULT_MODEL.tower_units,
                 embedding_dim: int = 8, dropout: float | None = DEFAULT_MODEL.dropout,
                 batch_norm: bool = DEFAULT_MODEL.batch_norm,
                 hidden_norm: bool = DEFAULT_MODEL.hidden_norm,
                 wide: bool = DEFAULT_MODEL.wide, cross: bool = DEFAULT_MODEL.cross,
                 options: dict[str, Any] | None = None,
                 epochs: int | None = DEFAULT_TRAINING.epochs,
                 batch_size: int | None = DEFAULT_TRAINING.batch_size,
                 lr: float = DEFAULT_TRAINING.lr,
                 lr_schedule: str = DEFAULT_TRAINING.lr_schedule,
                 warmup: float = DEFAULT_TRAINING.warmup,
                 weight_decay: float = DEFAULT_TRAINING.weight_decay,
                 monitor: str | None = DEFAULT_TRAINING.monitor,
                 patience: int | None = DEFAULT_TRAINING.patience,
                 precision: str = DEFAULT_TRAINING.precision, device: str = "auto",
                 seed: int = 0, threads: int | None = None,
                 ensemble: int | None = DEFAULT_TRAINING.ensemble, valid_fraction: float = 0.1,
                 numeric: Sequence[str] | None = None, categorical: Sequence[str] | None = None,
                 numeric_encoding: str = "auto", features: Sequence[FeatureSpec | str] = (),
                 group_by: str | None = None, id_columns: Sequence[str] = (),
                 exclude: Sequence[str] = (), weight_column: str | None = None,
                 verbose: bool = False):
        self.model = model
        self.tasks = tasks
        self.num_experts = num_experts
        self.expert_units = expert_units
        self.tower_units = tower_units
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.hidden_norm = hidden_norm
        self.wide = wide
        self.cross = cross
        self.options = options
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.warmup = warmup
        self.weight_decay = weight_decay
        self.monitor = monitor
        self.patience = patience
        self.precision = precision
        self.device = device
        self.seed = seed
        self.threads = threads
        self.ensemble = ensemble
        self.valid_fraction = valid_fraction
        self.numeric = numeric
        self.categorical = categorical
        self.numeric_encoding = numeric_encoding
        self.features = features
        self.group_by = group_by
        self.id_columns = id_columns
        self.exclude = exclude
        self.weight_column = weight_column
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing numbers are imputed (with an indicator)
        tags.input_tags.categorical = tags.input_tags.string = True
        tags.target_tags.required = self.tasks is None  # else the labels may be in X
        tags.target_tags.multi_output = True
        return tags

    # ---- the run --------------------------------------------------------------------------
    def _spec(self, tasks: Sequence[TaskSpec], weight_column: str | None) -> RunSpec:
        model = ModelConfig(name=self.model, expert_units=tuple(self.expert_units),
                            num_experts=self.num_experts, tower_units=tuple(self.tower_units),
                            dropout=self.dropout, batch_norm=self.batch_norm,
                            hidden_norm=self.hidden_norm,
                            wide=self.wide, cross=self.cross, options=dict(self.options or {}))
        training = replace(DEFAULT_TRAINING, epochs=self.epochs, batch_size=self.batch_size,
                           lr=self.lr, lr_schedule=self.lr_schedule, warmup=self.warmup,
                           weight_decay=self.weight_decay, monitor=self.monitor,
                           patience=self.patience, precision=self.precision, seed=self.seed,
                           threads=self.threads, ensemble=self.ensemble)
        return RunSpec(train="<DataFrame>", tasks=tuple(tasks),
                       valid_fraction=self.valid_fraction, id_columns=tuple(self.id_columns),
                       exclude=tuple(self.exclude), weight_column=weight_column,
                       numeric=None if self.numeric is None else tuple(self.numeric),
                       categorical=None if self.categorical is None else tuple(self.categorical),
                       numeric_encoding=self.numeric_encoding,
                       features=tuple(map(parse_feature, self.features)),
                       group_by=self.group_by, model=model,
                       embedding_dim=self.embedding_dim, training=training)

    def _tasks(self, X: pd.DataFrame, labels: pd.DataFrame | None) -> list[TaskSpec]:
        """The declared tasks (checked against ``y``'s columns), or one inferred per column
        of ``y``."""
        if labels is None:
            _checks.check(self.tasks is not None, "MultiTaskEstimator requires y to be passed, "
                          "but the target y is None; pass y (label columns) or name label "
                          "columns of X in tasks=['COLUMN:KIND', ...]")
            return [parse_task(t) for t in self.tasks]
        clash = [c for c in labels.columns if c in X.columns]
        _checks.check(not clash, f"y column(s) {clash} are also columns of X; drop them from X")
        if self.tasks is None:
            return [infer_task(c, labels[c]) for c in labels.columns]
        tasks = [parse_task(t) for t in self.tasks]
        unknown = [t.column for t in tasks if t.column not in labels.columns]
        _checks.check(not unknown, f"task column(s) {unknown} are not columns of y "
                      f"({', '.join(labels.columns)}); fix tasks or y")
        return tasks

    def _frame(self, inputs: pd.DataFrame, labels: pd.DataFrame | None,
               sample_weight: Any) -> tuple[pd.DataFrame, str | None]:
        """Inputs, labels and weights as one frame, and the weight column's name."""
        frame = _with_labels(inputs, labels)
        weight = self.weight_column
        if sample_weight is not None:
            _checks.check(weight is None, "pass sample_weight or weight_column, not both")
            frame = frame.assign(**{WEIGHT_COLUMN: sample_weights(sample_weight, len(frame))})
            weight = WEIGHT_COLUMN
        return frame, weight

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None, *,
            valid: Any = None) -> MultiTaskEstimator:
        """Train on ``X`` (and ``y``).

        Args:
            X: the input columns (a DataFrame, or a 2-D array: columns ``x0, x1, ...``); with
                ``y=None``, the label columns named in ``tasks`` too.
            y: ``None`` (labels in ``X``), a DataFrame of label columns, a Series (one task,
                named as the Series), or an array (1-D: a task ``y``; 2-D: ``y0, y1, ...``).
            sample_weight: per-row weights of the loss and the validation metrics.
            valid: validation rows, as ``X`` with its labels or an ``(X, y)`` pair (default:
                a seeded ``valid_fraction`` of the rows held out).

        Returns:
            ``self``.
        """
        inputs = as_frame(X)
        labels = label_frame(y, inputs.index)
        frame, weight = self._frame(inputs, labels, sample_weight)
        tasks = self._tasks(inputs, labels)
        spec = self._spec(tasks, weight)
        if valid is None:
            _checks.check(len(frame) >= 2, f"got {len(frame)} sample; at least 2 are needed "
                          "(valid_fraction of them held out to choose the best epoch), or "
                          "pass valid=...")
            train_df, valid_df = holdout(frame, spec.valid_fraction, spec.training.seed)
        else:
            vx, vy = valid if isinstance(valid, tuple) else (valid, None)
            v_inputs = as_frame(vx)
            train_df, valid_df = frame, _with_labels(v_inputs, label_frame(vy, v_inputs.index))
            if weight is not None and weight not in valid_df.columns:
                valid_df = valid_df.assign(**{weight: 1.0})
        check_columns(spec, list(frame.columns))  # a misspelt column name is an error
        encoder = make_encoder(spec).fit(train_df)
        valid_table = with_groups(encoder.transform(valid_df), valid_df, spec.group_by)
        train_table = encoder.transform(train_df)

        def fit_one(member: RunSpec, _: Any) -> tuple[Any, FitResult]:
            model = build_for(member, encoder)
            return model, Trainer(model, member.training, progress=self.verbose,
                                  device=self.device).fit(train_table, valid_table)

        spec = for_rows(spec, len(train_table))
        model, result = fit_members(spec, fit_one, len(train_table))
        self._spec_, self._result = spec, result
        self._set_fitted(model.eval(), encoder, list(inputs.columns), str_columns(X), frame)
        self.metrics_, self._gates = run_metrics(model, encoder, result, valid_table)
        self._set_history()
        return self

    def _set_fitted(self, model: Any, encoder: Any, columns: list[str], named: bool,
                    frame: pd.DataFrame | None) -> None:
        """The fitted attributes (``frame``: the training labels, to spell classes as they
        do; ``None``: as the encoder keys them)."""
        self.model_, self.encoder_, self.tasks_ = model, encoder, list(encoder.tasks)
        self._columns = list(columns)
        self.n_features_in_ = len(columns)
        if named:
            self.feature_names_in_ = np.asarray(columns, dtype=object)
        self.classes_ = {t.name: (original_classes(t, frame[t.column]) if frame is not None
                                  else np.asarray(t.classes))
                         for t in self.tasks_ if t.kind != "regression"}

    def _set_history(self) -> None:
        self.history_ = self.metrics_["history"]
        self.best_epoch_ = self.metrics_["best_epoch"]
        self.valid_metrics_ = self.metrics_["valid"]

    # ---- prediction -----------------------------------------------------------------------
    def _inputs(self, X: Any) -> pd.DataFrame:
        """``X`` checked against what ``fit`` saw: by column name for a DataFrame when fit
        saw names, else by position and count."""
        check_is_fitted(self, "model_")
        named = hasattr(self, "feature_names_in_")
        if str_columns(X):
            if named:
                needed = [s.name for s in self.encoder_.specs()]
                missing = [c for c in needed if c not in X.columns]
                _checks.check(not missing, "The feature names should match those that were "
                              f"passed during fit: X lacks input column(s) {missing}")
                return as_frame(X)
            warnings.warn("X has feature names, but MultiTaskEstimator was fitted without "
                          "feature names", UserWarning, stacklevel=3)
            X = X.to_numpy()
        elif named:
            warnings.warn("X does not have valid feature names, but MultiTaskEstimator was "
                          "fitted with feature names", UserWarning, stacklevel=3)
        width = np.shape(X)[1] if np.ndim(X) == 2 else None
        _checks.check(width in (None, self.n_features_in_), f"X has {width} features, but "
                      f"MultiTaskEstimator is expecting {self.n_features_in_} features as input.")
        return as_frame(X, self._columns)

    def _shaped(self, out: pd.DataFrame, X: Any) -> pd.DataFrame | np.ndarray:
        """DataFrame for DataFrame input; otherwise an array (1-D for one column)."""
        if str_columns(X):
            return out.set_axis(X.index, axis=0)
        arr = out.to_numpy()
        return arr[:, 0] if arr.shape[1] == 1 else arr

    def predict(self, X: Any) -> pd.DataFrame | np.ndarray:
        """One column per task: a classification task's predicted class (as the labels
        spell it; binary at probability 0.5), a regression task's value in the label's units.
        """
        frame = self._inputs(X)
        raw = predict_frame(self.model_, self.encoder_, frame)
        out = {}
        for task in self.tasks_:
            if task.kind == "binary":
                out[task.name] = self.classes_[task.name][(raw[task.name] >= 0.5).astype(int)]
            elif task.kind == "multiclass":
                proba = raw[[f"{task.name}_proba_{c}" for c in task.classes]].to_numpy()
                out[task.name] = self.classes_[task.name][proba.argmax(1)]
            else:
                out[task.name] = raw[task.name].to_numpy()
        return self._shaped(pd.DataFrame(out), X)

    def predict_proba(self, X: Any) -> pd.DataFrame | np.ndarray:
        """Probabilities: a binary task's P(positive class) in a column named as the task;
        a multiclass task's ``<task>_proba_<class>`` columns. Regression tasks have none."""
        frame = self._inputs(X)
        raw = predict_frame(self.model_, self.encoder_, frame)
        cols = []
        for task in self.tasks_:
            if task.kind == "binary":
                cols.append(task.name)
            elif task.kind == "multiclass":
                cols += [f"{task.name}_proba_{c}" for c in task.classes]
        return self._shaped(raw[cols], X)

    # ---- scoring --------------------------------------------------------------------------
    def evaluate(self, X: Any, y: Any = None, sample_weight: Any = None
                 ) -> dict[str, dict[str, float]]:
        """Per-task metrics on labelled rows (labels in ``X`` or given as ``y``, as in
        :meth:`fit`): AUC, log-loss and calibration for binary tasks, accuracy for
        multiclass, MSE and R² in the label's units for regression; with ``group_by``,
        GAUC, NDCG@10 and MRR over its groups."""
        frame = self._inputs(X)
        frame = _with_labels(frame, label_frame(y, frame.index))
        weight = self.encoder_.weight_column
        if weight is not None and weight not in frame.columns:
            frame = frame.assign(**{weight: 1.0 if sample_weight is None
                                    else sample_weights(sample_weight, len(frame))})
        table = with_groups(self.encoder_.transform(frame), frame, self.group_by)
        return evaluate_table(self.model_, self.encoder_, table)[0]

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """The mean over tasks of each task's skill, 0 for chance and 1 for perfect, so that
        every task weighs alike: 2·AUC − 1 for binary, accuracy rescaled as
        (accuracy − 1/C) / (1 − 1/C) for C classes, R² for regression
        (:func:`mmoe.metrics.combined_score`, what early stopping follows). Higher is
        better, as scikit-learn's model selection expects."""
        return combined_score(self.evaluate(X, y, sample_weight), self.tasks_)

    # ---- model directories ----------------------------------------------------------------
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write a model directory (what `mmoe train` writes: `mmoe predict`, `evaluate`,
        `export`, `inspect` and `describe` read it; :meth:`load` reads it back)."""
        check_is_fitted(self, "model_")
        estimator = {"columns": self._columns,
                     "feature_names": hasattr(self, "feature_names_in_"),
                     "classes": {k: v.tolist() for k, v in self.classes_.items()}}
        return write_run_dir(path, self._spec_, self.model_, self.encoder_, self._result,
                             self.metrics_, self._gates, overwrite=overwrite,
                             config={"estimator": estimator})

    @classmethod
    def load(cls, path: str | os.PathLike) -> MultiTaskEstimator:
        """A fitted estimator from a model directory (written by :meth:`save` or by
        `mmoe train`); its parameters are the run's settings."""
        md = load_model_dir(path)
        spec = build_run_spec(doc=md.config)
        m, t, cols = spec.model, spec.training, spec
        est = cls(m.name, tasks=list(spec.tasks), num_experts=m.num_experts,
                  expert_units=m.expert_units, tower_units=m.tower_units,
                  embedding_dim=spec.embedding_dim, dropout=m.dropout, batch_norm=m.batch_norm,
                  hidden_norm=m.hidden_norm, wide=m.wide, cross=m.cross,
                  options=dict(m.options) or None, epochs=t.epochs, batch_size=t.batch_size,
                  lr=t.lr, lr_schedule=t.lr_schedule, warmup=t.warmup,
                  weight_decay=t.weight_decay, monitor=t.monitor, patience=t.patience,
                  precision=t.precision, ensemble=t.ensemble,
                  seed=t.seed, threads=t.threads, valid_fraction=cols.valid_fraction,
                  numeric=cols.numeric, categorical=cols.categorical,
                  numeric_encoding=cols.numeric_encoding, features=list(cols.features),
                  group_by=cols.group_by, id_columns=cols.id_columns, exclude=cols.exclude,
                  weight_column=None if cols.weight_column == WEIGHT_COLUMN
                  else cols.weight_column)
        saved = md.config.get("estimator") or {}
        columns = saved.get("columns") or [s.name for s in md.encoder.specs()]
        est._set_fitted(md.model.eval(), md.encoder, columns,
                        saved.get("feature_names", True), None)
        est.classes_.update({k: np.asarray(v) for k, v in saved.get("classes", {}).items()})
        est._spec_, est._gates, est.metrics_ = spec, None, md.metrics
        est._result = FitResult(md.metrics.get("history", []), md.metrics.get("best_epoch", 0),
                                monitor=md.metrics.get("monitor", ""), config=spec.training)
        est._set_history()
        return est


def _with_labels(inputs: pd.DataFrame, labels: pd.DataFrame | None) -> pd.DataFrame:
    """The input columns and the label columns side by side (the inputs alone without)."""
    return inputs if labels is None else pd.concat([inputs, labels], axis=1)

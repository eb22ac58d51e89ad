"""``MultiTaskEstimator``: the library in scikit-learn style, on DataFrames.

Hyperparameters are constructor arguments stored unchanged (so ``get_params``,
``set_params`` and ``sklearn.base.clone`` work); everything learnt by :meth:`fit` lives in
attributes ending in ``_``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from .. import _checks
from ..config import FeatureSpec, ModelConfig, TaskSpec
from ..train import Trainer
from .fit import build_for
from .predict import evaluate_table, predict_frame
from .spec import DEFAULT_MODEL, DEFAULT_TRAINING, RunSpec, parse_feature, parse_task
from .tables import check_columns, holdout, make_encoder, with_groups


class MultiTaskEstimator(BaseEstimator):
    """Multi-task model on a DataFrame: one label column per task.

    Args:
        model: registered model name (``mmoe``, ``omoe``, ``shared_bottom``, ``ple``...).
        num_experts, expert_units, tower_units, embedding_dim, dropout: model shape.
        epochs, batch_size, lr, weight_decay, patience, seed, threads: training (``None``
            epochs or batch size: chosen from the number of rows, as `mmoe train` does).
        valid_fraction: share of the rows held out for early stopping (when ``fit`` gets no
            ``valid`` frame).
        numeric, categorical: column type overrides (``None``: inferred).
        features: :class:`~mmoe.config.FeatureSpec` objects or ``NAME:KIND[:KEY=VALUE,...]``
            strings stating columns exactly (hashed ids, sequences, shared tables).
        group_by: column grouping rows (users) for GAUC, NDCG@10 and MRR in the validation
            metrics and :meth:`evaluate`.
        id_columns: columns never used as inputs.
        weight_column: per-row sample weights.
        verbose: progress bars.

    Attributes (after fit):
        model_: the trained :class:`~mmoe.models.MultiTaskModel`.
        encoder_: the fitted :class:`~mmoe.data.encoders.TableEncoder`.
        tasks_: the tasks with their learnt labels/classes.
        history_: per-epoch training losses and validation metrics.
        valid_metrics_: per-task metrics on the validation rows at the end.

    Example:
        >>> est = MultiTaskEstimator(epochs=2, id_columns=["user_id"]).fit(
        ...     demo, tasks=["clicked:binary", "hours:regression", "segment:multiclass"])
        >>> est.predict_proba(demo).columns.tolist()
        ['clicked', 'segment_proba_high', 'segment_proba_low', 'segment_proba_mid']
    """

    def __init__(self, model: str = "mmoe", *, num_experts: int = DEFAULT_MODEL.num_experts,
                 expert_units: tuple[int, ...] = DEFAULT_MODEL.expert_units,
                 tower_units: tuple[int, ...] = DEFAULT_MODEL.tower_units,
                 embedding_dim: int = 8, dropout: float = 0.0,
                 epochs: int | None = DEFAULT_TRAINING.epochs,
                 batch_size: int | None = DEFAULT_TRAINING.batch_size,
                 lr: float = DEFAULT_TRAINING.lr,
                 weight_decay: float = DEFAULT_TRAINING.weight_decay,
                 patience: int | None = DEFAULT_TRAINING.patience,
                 seed: int = 0, threads: int | None = None, valid_fraction: float = 0.1,
                 numeric: Sequence[str] | None = None, categorical: Sequence[str] | None = None,
                 id_columns: Sequence[str] = (), weight_column: str | None = None,
                 features: Sequence[FeatureSpec | str] = (), group_by: str | None = None,
                 verbose: bool = False):
        self.model = model
        self.num_experts = num_experts
        self.expert_units = expert_units
        self.tower_units = tower_units
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.seed = seed
        self.threads = threads
        self.valid_fraction = valid_fraction
        self.numeric = numeric
        self.categorical = categorical
        self.id_columns = id_columns
        self.weight_column = weight_column
        self.features = features
        self.group_by = group_by
        self.verbose = verbose

    def _spec(self, tasks: Sequence[Any]) -> RunSpec:
        model = ModelConfig(name=self.model, expert_units=tuple(self.expert_units),
                            num_experts=self.num_experts, tower_units=tuple(self.tower_units),
                            dropout=self.dropout)
        training = replace(DEFAULT_TRAINING, epochs=self.epochs, batch_size=self.batch_size,
                           lr=self.lr, weight_decay=self.weight_decay, patience=self.patience,
                           seed=self.seed, threads=self.threads)
        return RunSpec(train="<DataFrame>", tasks=tuple(parse_task(t) for t in tasks),
                       valid_fraction=self.valid_fraction, id_columns=tuple(self.id_columns),
                       weight_column=self.weight_column,
                       numeric=None if self.numeric is None else tuple(self.numeric),
                       categorical=None if self.categorical is None else tuple(self.categorical),
                       features=tuple(map(parse_feature, self.features)),
                       group_by=self.group_by, model=model,
                       embedding_dim=self.embedding_dim, training=training)

    def fit(self, X: pd.DataFrame, tasks: Sequence[str | TaskSpec | dict] | None = None,
            valid: pd.DataFrame | None = None) -> MultiTaskEstimator:
        """Fit on ``X`` (inputs and label columns together).

        Args:
            X: the training rows.
            tasks: ``"COLUMN:KIND[:POSITIVE]"`` strings or :class:`TaskSpec` objects.
            valid: validation rows (default: a seeded ``valid_fraction`` hold-out of ``X``).

        Returns:
            ``self``.
        """
        _checks.check(isinstance(X, pd.DataFrame), "fit needs a pandas DataFrame with the "
                      f"input and label columns, got {type(X).__name__}")
        _checks.check(bool(tasks), "fit needs tasks, e.g. tasks=['income:binary:>50K']")
        spec = self._spec(tasks)
        if valid is None:
            train_df, valid_df = holdout(X, spec.valid_fraction, spec.training.seed)
        else:
            train_df, valid_df = X, valid
        check_columns(spec, list(X.columns))  # a misspelt column name is an error
        encoder = make_encoder(spec).fit(train_df)
        train = encoder.transform(train_df)
        valid_table = with_groups(encoder.transform(valid_df), valid_df, spec.group_by)
        model = build_for(spec, encoder)
        result = Trainer(model, spec.training, progress=self.verbose).fit(train, valid_table)
        self.model_, self.encoder_, self.tasks_ = model.eval(), encoder, encoder.tasks
        self.history_ = result.history
        self.valid_metrics_ = evaluate_table(model, encoder, valid_table)[0]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this MultiTaskEstimator is not fitted yet; call fit(df, "
                                 "tasks=[...]) first")

    def _raw(self, X: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        return predict_frame(self.model_, self.encoder_, X)

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """One column per task: binary and multiclass the predicted label (as in the
        training data's text form), regression the value in the label's scale."""
        raw = self._raw(X)
        out = {}
        for task in self.tasks_:
            if task.kind == "binary":
                negative, positive = task.classes
                out[task.name] = np.where(raw[task.name].to_numpy() >= 0.5, positive, negative)
            else:
                out[task.name] = raw[task.name].to_numpy()
        return pd.DataFrame(out, index=X.index)

    def predict_proba(self, X: pd.DataFrame) -> pd.DataFrame:
        """Probabilities: binary P(positive) in a column named as the task; multiclass
        ``<task>_proba_<class>`` columns. Regression tasks have none."""
        raw = self._raw(X)
        cols = []
        for task in self.tasks_:
            if task.kind == "binary":
                cols.append(task.name)
            elif task.kind == "multiclass":
                cols += [f"{task.name}_proba_{c}" for c in task.classes]
        return raw[cols].set_index(X.index)

    def evaluate(self, X: pd.DataFrame) -> dict[str, dict[str, float]]:
        """Per-task metrics on labelled rows ``X`` (regression in the label's scale; with
        ``group_by``, GAUC, NDCG@10 and MRR over its groups)."""
        self._check_fitted()
        table = with_groups(self.encoder_.transform(X), X, self.group_by)
        return evaluate_table(self.model_, self.encoder_, table)[0]

"""The best any model can do on data whose true probabilities are known (the funnel
generator's ``p_*`` columns): the metrics of those probabilities used as predictions.

AUC and GAUC depend only on the order of the predictions, so a model whose output is any
increasing function of the true probability reaches them exactly; no model can rank better
in expectation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from scipy.special import logit

from .. import _checks
from ..config import TaskSpec
from ..data.ids import group_codes
from ..data.readers import DEFAULT_CHUNK_ROWS, iter_table
from ..metrics import evaluate
from .tables import in_file

#: the funnel generator's tasks and the column holding each one's true probability
FUNNEL_TRUTH = {"click": "p_click", "purchase": "p_click_buy"}


def oracle_metrics(path: str | os.PathLike, truth: Mapping[str, str] = FUNNEL_TRUTH,
                   group_by: str | None = "user_id", k: int = 10,
                   chunk_rows: int = DEFAULT_CHUNK_ROWS) -> dict[str, dict[str, float]]:
    """Metrics of the true probabilities as predictions, per binary task.

    Args:
        path: labelled rows (a file or a directory of Parquet shards).
        truth: task label column -> column of its true probability.
        group_by: the column grouping rows for GAUC, NDCG@k and MRR (``None``: none).
        k: the NDCG cut-off.

    Returns:
        ``{task: {metric: value}}`` as :func:`mmoe.metrics.evaluate` gives them.

    Example:
        >>> from mmoe.data.datasets.funnel import FunnelSpec, generate_funnel
        >>> out = generate_funnel(FunnelSpec(rows=20_000, users=500, items=200), "funnel")
        >>> m = oracle_metrics(out / "test")
        >>> 0.7 < m["click"]["auc"] < 1, sorted(m)
        (True, ['click', 'purchase'])
    """
    labels, probs, groups = [], [], []
    columns = [*truth, *truth.values(), *([group_by] if group_by else [])]
    with in_file(path):
        for chunk in iter_table(path, chunk_rows, columns=columns):
            labels.append(chunk[list(truth)].to_numpy(dtype=np.float64, na_value=np.nan))
            probs.append(chunk[list(truth.values())].to_numpy(dtype=np.float64))
            if group_by:
                groups.append(group_codes(chunk[group_by]))
    p = np.concatenate(probs)
    _checks.check(bool(np.all((p >= 0) & (p <= 1))), f"'{path}': the true probabilities "
                  f"({', '.join(truth.values())}) must lie in [0, 1]")
    tasks = [TaskSpec(name, "binary") for name in truth]
    return evaluate(tasks, [slice(t, t + 1) for t in range(len(tasks))],
                    logit(np.clip(p, 1e-300, np.nextafter(1.0, 0.0))), np.concatenate(labels),
                    groups=np.concatenate(groups) if groups else None, k=k)

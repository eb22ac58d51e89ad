"""A small customer table with three tasks of three kinds, for first runs and examples
(`mmoe data generate table`): the mixed columns a user's own table has (an id, numbers with
missing values and a heavy tail, text categories, a count) and three related tasks.

For customer i, with z_i ~ N(0, 1) a latent engagement, and the columns

    age ~ U(18, 80), income ~ LogNormal(10.5 + 0.3 z, 0.6), visits ~ Poisson(exp(1 + 0.5 z)),
    city ∈ {paris, lyon, nice, lille} (effects c = 0.4, 0, −0.3, −0.1), plan ∈ {free, pro},

the tasks are

    churned = yes   iff  −0.8 z − 0.4·[plan = pro] + c(city) + 0.02 (age − 45) + ε₁ > 0.5
    spend           =    exp(3 + 0.4 z + 0.3 log(income / 36000) + 0.5·[plan = pro] + ε₂)
    segment         =    low / mid / high by 0.7 z + 0.5 log(visits + 1) + ε₃ at −0.3, 0.9

with ε ~ N(0, 0.5²); 5% of ages and 3% of cities are missing. Churn and segment share z,
spend shares z and income: related tasks, as in the paper's motivation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..._fileio import atomic_dir

CITIES = {"paris": 0.4, "lyon": 0.0, "nice": -0.3, "lille": -0.1}
SPLITS = (("train", 0.8), ("valid", 0.1), ("test", 0.1))


def customers(rows: int, seed: int = 0) -> pd.DataFrame:
    """The table of the module docstring, ``rows`` customers.

    Example:
        >>> customers(5).columns.tolist()
        ['customer_id', 'age', 'income', 'visits', 'city', 'plan', 'churned', 'spend', 'segment']
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=rows)
    age = rng.uniform(18, 80, rows).round()
    income = np.exp(rng.normal(10.5 + 0.3 * z, 0.6)).round(-2)
    visits = rng.poisson(np.exp(1.0 + 0.5 * z))
    city = rng.choice(list(CITIES), rows)
    pro = rng.random(rows) < 0.3
    eps = rng.normal(0.0, 0.5, (3, rows))
    churn = (-0.8 * z - 0.4 * pro + pd.Series(city).map(CITIES).to_numpy()
             + 0.02 * (age - 45) + eps[0])
    spend = np.exp(3 + 0.4 * z + 0.3 * np.log(income / 36_000) + 0.5 * pro + eps[1])
    level = 0.7 * z + 0.5 * np.log(visits + 1) + eps[2]
    return pd.DataFrame({
        "customer_id": np.arange(rows) + 100_000,
        "age": np.where(rng.random(rows) < 0.05, np.nan, age),
        "income": income, "visits": visits,
        "city": np.where(rng.random(rows) < 0.03, None, city),
        "plan": np.where(pro, "pro", "free"),
        "churned": np.where(churn > 0.5, "yes", "no"),
        "spend": spend.round(2),
        "segment": np.select([level < -0.3, level > 0.9], ["low", "high"], "mid")})


def write_customers(out: str | os.PathLike, rows: int, seed: int = 0) -> Path:
    """Write ``train.csv``, ``valid.csv`` and ``test.csv`` (80/10/10 of the rows, in
    order) to the new directory ``out`` (created whole; refused if it exists and is not
    empty)."""
    df = customers(rows, seed)
    bounds = np.cumsum([0] + [round(share * rows) for _, share in SPLITS])
    bounds[-1] = rows
    with atomic_dir(Path(out)) as stage:
        for (name, _), lo, hi in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
            df.iloc[lo:hi].to_csv(stage / f"{name}.csv", index=False)
    return Path(out)

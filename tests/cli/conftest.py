"""Small generated tables for the own-data CLI and facade tests."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch


def make_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Mixed-type rows with missing values and three learnable tasks of each kind."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    city = rng.choice(["paris", "rome", "oslo"], size=n)
    effect = pd.Series(city).map({"paris": 1.0, "rome": -1.0, "oslo": 0.0}).to_numpy()
    buys = np.where(x1 + effect + 0.3 * rng.normal(size=n) > 0, "yes", "no")
    spend = 1000.0 + 250.0 * (x2 - x1) + 10.0 * rng.normal(size=n)
    segment = np.select([x2 > 0.5, x2 < -0.5], ["high", "low"], "mid")
    x2_obs = np.where(rng.random(n) < 0.1, np.nan, x2)
    city_obs = np.where(rng.random(n) < 0.05, None, city)
    return pd.DataFrame({"user_id": np.arange(n) + 10_000, "x1": x1, "x2": x2_obs,
                         "city": city_obs, "w": rng.uniform(0.5, 1.5, n), "buys": buys,
                         "spend": spend, "segment": segment})


TASK_FLAGS = ["--task", "buys:binary:yes", "--task", "spend:regression",
              "--task", "segment:multiclass"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tables(tmp_path_factory) -> dict[str, Path]:
    """train.csv, valid.parquet, test.csv.gz, test.parquet in a session directory."""
    d = tmp_path_factory.mktemp("tables")
    train, valid, test = make_table(600, 0), make_table(200, 1), make_table(150, 2)
    paths = {"train": d / "train.csv", "valid": d / "valid.parquet",
             "test": d / "test.csv.gz", "test_parquet": d / "test.parquet",
             "train_parquet": d / "train.parquet"}
    train.to_csv(paths["train"], index=False)
    train.to_parquet(paths["train_parquet"], index=False)
    valid.to_parquet(paths["valid"], index=False)
    test.to_csv(paths["test"], index=False)
    test.to_parquet(paths["test_parquet"], index=False)
    return paths

"""The demo customer table (`mmoe data generate table`): reproducible, the stated missing
rates, and tasks driven as its equations say."""

import numpy as np
import pandas as pd
import pytest

from mmoe.cli import main
from mmoe.data.datasets.customers import customers


def test_seeded_and_as_documented():
    df = customers(20_000, seed=3)
    pd.testing.assert_frame_equal(df, customers(20_000, seed=3))
    assert not df.equals(customers(20_000, seed=4))
    assert abs(df["age"].isna().mean() - 0.05) < 0.01
    assert abs(df["city"].isna().mean() - 0.03) < 0.01
    pro = df["plan"] == "pro"
    churned = df["churned"] == "yes"
    assert churned[pro].mean() < churned[~pro].mean()  # -0.4 [plan = pro]
    ratio = np.exp(np.log(df["spend"][pro]).mean() - np.log(df["spend"][~pro]).mean())
    assert abs(np.log(ratio) - 0.5) < 0.05  # exp(0.5 [plan = pro])
    by_city = df.groupby("city")["churned"].apply(lambda s: (s == "yes").mean())
    assert by_city["paris"] > by_city["lille"] > by_city["nice"]
    assert set(df["segment"]) == {"low", "mid", "high"}


def test_cli_writes_three_splits_and_refuses_a_full_directory(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["data", "generate", "table", "--rows", "100", "--out", str(out)]
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    sizes = {p: len(pd.read_csv(out / f"{p}.csv")) for p in ("train", "valid", "test")}
    assert sizes == {"train": 80, "valid": 10, "test": 10}
    with pytest.raises(SystemExit) as again:
        main(argv)
    assert again.value.code == 2 and "exists and is not empty" in capsys.readouterr().err
    assert len(pd.read_csv(out / "train.csv")) == 80

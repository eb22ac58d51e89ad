"""Census-Income loader: parsing, labels, feature removal, splits, correlations (paper §6.3)."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mmoe.data.datasets.census import (
    COLLEGE,
    COLUMNS,
    NUMERIC,
    TEST_FILE,
    TRAIN_FILE,
    add_labels,
    census_tasks,
    input_columns,
    label_correlation,
    load_census,
    read_census_file,
)

SLICE = 3000


@pytest.fixture(scope="module")
def small(census_dir):
    return load_census(census_dir, group=1, seed=0, nrows=SLICE)


@pytest.fixture(scope="module")
def full(census_dir):
    return load_census(census_dir, group=1, seed=0)


def test_read_first_records_match_source(census_dir):
    train = read_census_file(census_dir / TRAIN_FILE, nrows=5)
    test = read_census_file(census_dir / TEST_FILE, nrows=5)
    assert list(train.columns) == list(COLUMNS) and len(COLUMNS) == 42
    assert train.loc[0, ["age", "class_worker", "det_ind_code", "det_occ_code", "education"]] \
        .tolist() == [73.0, "Not in universe", "0", "0", "High school graduate"]
    assert test.loc[0, ["age", "class_worker", "det_ind_code", "det_occ_code", "education"]] \
        .tolist() == [38.0, "Private", "6", "36", "1st 2nd 3rd or 4th grade"]
    assert train["income_50k"].isin(["- 50000.", "50000+."]).all()


def test_missing_values_and_dtypes(small):
    df = small.train
    # SOURCE.md: the four migration fields are '?' for every 1995 record, present for 1994.
    for col in ("mig_chg_msa", "mig_chg_reg", "mig_move_reg", "mig_prev_sunbelt"):
        assert df.loc[df["year"] == "95", col].isna().all()
        assert df.loc[df["year"] == "94", col].notna().all()
    assert (df["year"] == "95").any() and (df["year"] == "94").any()
    assert not (df.astype(str) == "?").any().any()
    for col in small.numeric:
        assert df[col].dtype == np.float64
    for col in ("det_ind_code", "det_occ_code", "own_or_self", "vet_benefits", "year"):
        assert col in small.categorical
        assert all(isinstance(v, str) for v in df[col].dropna().unique())


def test_labels_on_rows():
    rows = pd.DataFrame({
        "income_50k": ["50000+.", "- 50000.", "- 50000.", "50000+.", "- 50000.", "- 50000."],
        "education": ["Bachelors degree(BA AB BS)", "Some college but no degree", "Children",
                      "Associates degree-academic program", "High school graduate",
                      "Doctorate degree(PhD EdD)"],
        "marital_stat": ["Never married", "Married-civilian spouse present", "Never married",
                         "Divorced", "Married-A F spouse present", "Widowed"],
    })
    out = add_labels(rows)
    assert out["label_income"].tolist() == [1, 0, 0, 1, 0, 0]
    assert out["label_education"].tolist() == [1, 0, 0, 1, 0, 1]
    assert out["label_marital"].tolist() == [1, 0, 1, 0, 0, 0]


def test_labels_on_slice_match_raw_columns(small):
    for df in (small.train, small.valid, small.test):
        assert set(df["label_income"].unique()) <= {0, 1}
        np.testing.assert_array_equal(df["label_income"], df["income_50k"] == "50000+.")
        np.testing.assert_array_equal(df["label_marital"], df["marital_stat"] == "Never married")
        np.testing.assert_array_equal(df["label_education"], df["education"].isin(COLLEGE))
    assert 0 < small.train["label_income"].sum() < SLICE


@pytest.mark.parametrize("group", [1, 2])
def test_feature_removal(group):
    numeric, categorical = input_columns(group)
    inputs = set(numeric) | set(categorical)
    assert not set(numeric) & set(categorical)
    assert not inputs & {"education", "marital_stat", "instance_weight"}
    assert not any(c.startswith("label_") for c in inputs)
    assert numeric == NUMERIC
    if group == 1:
        assert "income_50k" not in inputs
        assert inputs | {"education", "marital_stat", "instance_weight", "income_50k"} \
            == set(COLUMNS)
    else:  # the paper removes only education and marital status
        assert "income_50k" in categorical
        assert inputs | {"education", "marital_stat", "instance_weight"} == set(COLUMNS)


def test_tasks_main_first():
    assert [(t.name, t.column) for t in census_tasks(1)] == [
        ("income", "label_income"), ("marital", "label_marital")]
    assert [(t.name, t.column) for t in census_tasks(2)] == [
        ("education", "label_education"), ("marital", "label_marital")]
    assert all(t.kind == "binary" for t in census_tasks(2))


def test_split_is_half_and_seeded(census_dir, small):
    held = read_census_file(census_dir / TEST_FILE, nrows=SLICE)
    assert len(small.train) == SLICE
    assert len(small.valid) == len(small.test) == SLICE // 2
    both = pd.concat([small.valid, small.test])[list(COLUMNS)]
    hashes = [np.sort(pd.util.hash_pandas_object(df, index=False).to_numpy())
              for df in (both, held)]
    np.testing.assert_array_equal(*hashes)  # a partition of the test file
    again = load_census(census_dir, group=1, seed=0, nrows=SLICE)
    other = load_census(census_dir, group=1, seed=1, nrows=SLICE)
    pd.testing.assert_frame_equal(again.valid, small.valid)
    assert not other.valid.equals(small.valid)


def test_bad_group_and_nrows(census_dir):
    with pytest.raises(ValueError, match="census group"):
        load_census(census_dir, group=3)
    with pytest.raises(ValueError, match="nrows"):
        load_census(census_dir, group=1, nrows=0)


def test_not_a_census_file(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(", ".join(["1"] * 42) + "\n")
    with pytest.raises(ValueError, match="not a Census-Income file"):
        read_census_file(path)


def test_full_row_counts(full):
    assert (len(full.train), len(full.valid), len(full.test)) == (199_523, 49_881, 49_881)
    assert full.train["label_income"].sum() == 12_382  # SOURCE.md
    assert full.train["label_marital"].sum() == 86_485
    assert full.valid["label_income"].sum() + full.test["label_income"].sum() == 6_186
    assert set(full.train["education"].unique()) >= COLLEGE  # no typo in the set
    assert full.train["education"].nunique() == 17


def test_label_correlations(full):
    g2 = replace(full, tasks=census_tasks(2), group=2)
    # Over 10,000 random training rows; paper: 0.1768 (group 1) and 0.2373 (group 2).
    r1, r2 = label_correlation(full, seed=0), label_correlation(g2, seed=0)
    assert 0.15 < r1 < 0.21 and 0.21 < r2 < 0.27
    # Over the whole training file (deterministic).
    n = len(full.train)
    assert label_correlation(full, n=n) == pytest.approx(0.1782, abs=1e-4)
    assert label_correlation(g2, n=n) == pytest.approx(0.2400, abs=1e-4)
    assert label_correlation(full, seed=1) != r1

"""`mmoe data fetch ali-ccp | aliexpress` against a local HTTP server serving small files made
here in exactly the published formats: download, resume, checksum record, offline use,
conversion to Parquet (every value checked), the mmoe.toml trained on, and bad input."""

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tomllib

from mmoe.cli import main
from mmoe.data.datasets.ali_ccp import FIELDS
from mmoe.data.datasets.aliexpress import CATEGORICAL, HEADER, NUMERICAL
from mmoe.data.datasets.public import in_valid
from mmoe.data.fetch import MANIFEST, recorded_checksums

MAX_LEN = 50


# --- Ali-CCP in its published format --------------------------------------------------------
def _features(entries: list[tuple[str, int, str]]) -> str:
    """``FIELD\\x01ID\\x03VALUE`` entries joined by ``\\x02``."""
    return "\x02".join(f"{field}\x01{fid}\x03{value}" for field, fid, value in entries)


def _ali_ccp_split(split: str, rng: np.random.Generator, impressions: int, users: int,
                   id_base: int) -> tuple[bytes, bytes, list[dict]]:
    """(skeleton csv, common features csv, the rows expected after conversion)."""
    common_lines, user_rows = [], {}
    for u in range(users):
        index = hashlib.md5(f"{split}{u}".encode()).hexdigest()
        row: dict = {"user_id": id_base + u}
        entries = [("101", id_base + u, "1.0")]
        for k, (field, column) in enumerate([("121", "user_profile"), ("124", "user_gender"),
                                              ("125", "user_age")]):
            value = int(rng.integers(10, 13)) + 100 * k
            row[column] = value
            entries.append((field, value, "1.0"))
        length = 60 if u == 0 else int(rng.integers(0, 5))  # user 0: longer than MAX_LEN
        cats = [int(v) for v in rng.integers(1000, 1100, length)]
        if cats:
            row["user_categories"] = cats[:MAX_LEN]
        rng.shuffle(entries)  # single fields come in any order; a list keeps its own
        entries += [("109_14", c, f"{int(rng.integers(1, 9))}.0") for c in cats]
        common_lines.append(f"{index},{len(entries)},{_features(entries)}")
        user_rows[index] = row
    skeleton_lines, expected = [], []
    indexes = list(user_rows)
    for i in range(impressions):
        sample_id = f"{split}-{i}"
        index = indexes[int(rng.integers(0, users))]
        click = int(rng.random() < 0.3)
        buy = int(click and rng.random() < 0.3)
        if i % 97 == 5:  # the release's defect: a purchase without a click
            click, buy = 0, 1
        item = int(rng.integers(5000, 5040))
        entries = [("205", item, "1.0"), ("206", 700 + item % 7, "1.0"),
                   ("301", int(rng.integers(1, 4)), "1.0")]
        row = {"sample_id": sample_id, **user_rows[index], "item_id": item,
               "item_category": 700 + item % 7, "position": entries[2][1],
               "click": click, "purchase": buy}
        if i % 3 == 0:  # a list field of the item, and a repeated single field (first kept)
            entries += [("210", 9001, "1.0"), ("210", 9002, "1.0"), ("206", 1, "1.0")]
            row["item_intentions"] = [9001, 9002]
        if i % 5 == 0:
            entries.append(("999", 4, "1.0"))  # a field the table does not know
        skeleton_lines.append(f"{sample_id},{click},{buy},{index},{len(entries)},"
                              f"{_features(entries)}")
        if not (buy and not click):
            expected.append(row)
    return ("\n".join(skeleton_lines) + "\n").encode(), \
        ("\n".join(common_lines) + "\n").encode(), expected


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_ali_ccp(directory: Path, impressions: int = 2000, seed: int = 0) -> dict[str, list]:
    """sample_train.tar.gz and sample_test.tar.gz in ``directory``; returns the expected rows
    of each file."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    expected = {}
    for split, base in (("train", 1), ("test", 10_000)):
        skeleton, common, expected[split] = _ali_ccp_split(split, rng, impressions, 40, base)
        # the common features come second in the test archive: both orders are read
        members = {f"common_features_{split}.csv": common,
                   f"sample_skeleton_{split}.csv": skeleton}
        if split == "test":
            members = dict(reversed(members.items()))
        _tar(directory / f"sample_{split}.tar.gz", members)
    return expected


def _read(directory: Path) -> pd.DataFrame:
    return pq.read_table(directory).to_pandas()


def _fetch(*args: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["data", "fetch", *args])
    assert exit_.value.code in (0, None)


def _as_expected(frame: pd.DataFrame, rows: list[dict]) -> None:
    """Every value of ``frame`` is the one the published lines say (None where absent)."""
    assert frame["sample_id"].tolist() == [r["sample_id"] for r in rows]
    for spec in FIELDS:
        got = frame[spec.column].tolist()
        if spec.is_list:
            got = [None if v is None else list(v) for v in got]
        else:
            got = [None if pd.isna(v) else int(v) for v in got]
        assert got == [r.get(spec.column) for r in rows], spec.column
    for label in ("click", "purchase"):
        assert frame[label].tolist() == [r[label] for r in rows]


@pytest.fixture
def ali_ccp_site(tmp_path, serve):
    site = tmp_path / "site"
    expected = make_ali_ccp(site)
    url, requests = serve(site)
    return site, url, requests, expected


def test_ali_ccp_fetch_and_convert(ali_ccp_site, tmp_path, capsys):
    site, url, requests, expected = ali_ccp_site
    data = tmp_path / "data"
    _fetch("ali-ccp", "--data-dir", str(data), "--url", url)
    assert sorted(p for p, _ in requests) == ["/sample_test.tar.gz", "/sample_train.tar.gz"]
    out = data / "parquet"
    assert capsys.readouterr().out.count("ready in") == 1
    # the checksums of the first copies are recorded, in sha256sum's format
    assert recorded_checksums(data) == {
        n: hashlib.sha256((site / n).read_bytes()).hexdigest()
        for n in ("sample_train.tar.gz", "sample_test.tar.gz")}
    # train/valid: the training file split by a stable hash of sample_id; test: the test file
    train_rows = expected["train"]
    held = in_valid(pa.array([r["sample_id"] for r in train_rows]), 0.1)
    _as_expected(_read(out / "train"), [r for r, h in zip(train_rows, held, strict=True) if not h])
    _as_expected(_read(out / "valid"), [r for r, h in zip(train_rows, held, strict=True) if h])
    _as_expected(_read(out / "test"), expected["test"])
    info = json.loads((out / "dataset.json").read_text())
    every = [int(r["sample_id"].split("-")[1]) for rows in expected.values() for r in rows]
    assert info["met"]["purchase_without_click"] == 2 * 21  # rows 5, 102, ... in both files
    assert info["met"]["repeated"] == {"item_category": sum(i % 3 == 0 for i in every)}
    assert info["met"]["unknown_fields"] == {"999": sum(i % 5 == 0 for i in every)}
    assert info["met"]["count_mismatch"] == 0 and info["met"]["missing_common"] == 0
    assert info["rows"]["train"] + info["rows"]["valid"] == len(train_rows)
    config = tomllib.loads((out / "mmoe.toml").read_text())
    assert config["tasks"] == ["click:binary:1", "purchase:binary:1:after=click"]
    assert config["columns"] == {"exclude": ["sample_id"], "group_by": "user_id"}
    assert config["features"]["item_id"] == {"kind": "categorical"}
    assert config["features"]["user_categories"] == {"kind": "sequence", "max_len": MAX_LEN}
    # fetching again: files verified, conversion found, nothing requested
    _fetch("ali-ccp", "--data-dir", str(data), "--url", url)
    assert len(requests) == 2


def test_ali_ccp_mmoe_toml_trains(ali_ccp_site, tmp_path):
    _, url, _, _ = ali_ccp_site
    out = tmp_path / "converted"
    _fetch("ali-ccp", "--data-dir", str(tmp_path / "data"), "--url", url, "--out", str(out),
           "--max-rows", "1500")
    assert len(_read(out / "test")) == 1500 - 16  # the first 1500 lines, less the orphans
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--config", str(out / "mmoe.toml"), "--out", str(tmp_path / "model"),
              "--model", "esmm", "--epochs", "1"])
    assert exit_.value.code in (0, None)
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert {"click", "purchase"} <= set(metrics["valid"])


def test_ali_ccp_offline_from_files_or_extracted_csvs(ali_ccp_site, tmp_path, monkeypatch):
    site, _, requests, expected = ali_ccp_site
    monkeypatch.delenv("MMOE_ALI_CCP_URL", raising=False)
    _fetch("ali-ccp", "--data-dir", str(site), "--out", str(tmp_path / "a"))
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    for split in ("train", "test"):
        with tarfile.open(site / f"sample_{split}.tar.gz") as tar:
            tar.extractall(extracted, filter="data")
    _fetch("ali-ccp", "--data-dir", str(extracted), "--out", str(tmp_path / "b"))
    assert requests == []
    for split in ("train", "valid", "test"):
        assert _read(tmp_path / "a" / split).equals(_read(tmp_path / "b" / split))
    _as_expected(_read(tmp_path / "b" / "test"), expected["test"])


def test_ali_ccp_resumes_a_partial_download(ali_ccp_site, tmp_path):
    site, url, requests, _ = ali_ccp_site
    data = tmp_path / "data"
    data.mkdir()
    whole = (site / "sample_train.tar.gz").read_bytes()
    (data / "sample_train.tar.gz.part").write_bytes(whole[:1000])
    _fetch("ali-ccp", "--data-dir", str(data), "--url", url, "--max-rows", "100")
    assert ("/sample_train.tar.gz", "bytes=1000-") in requests
    assert (data / "sample_train.tar.gz").read_bytes() == whole


def test_ali_ccp_errors(ali_ccp_site, tmp_path, monkeypatch, capsys):
    site, url, _, _ = ali_ccp_site
    monkeypatch.delenv("MMOE_ALI_CCP_URL", raising=False)

    def fails(*args: str) -> str:
        with pytest.raises(SystemExit) as exit_:
            main(["data", "fetch", *args])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("mmoe: error: ") and err.count("\n") == 1
        return err

    empty = tmp_path / "empty"
    assert "tianchi.aliyun.com/dataset/408" in fails("ali-ccp", "--data-dir", str(empty))
    # a file changed after its checksum was recorded
    data = tmp_path / "data"
    _fetch("ali-ccp", "--data-dir", str(data), "--url", url, "--max-rows", "200")
    with open(data / "sample_test.tar.gz", "ab") as f:
        f.write(b"x")
    assert "sample_test.tar.gz has the wrong sha256" in fails(
        "ali-ccp", "--data-dir", str(data), "--out", str(tmp_path / "o"))
    assert (data / MANIFEST).is_file()
    # other settings than the existing conversion's
    _fetch("ali-ccp", "--data-dir", str(data), "--url", url, "--max-rows", "200")  # re-fetched
    assert "is not a conversion with these settings" in fails(
        "ali-ccp", "--data-dir", str(data), "--max-rows", "300")
    # a malformed line names the file, the member and the line
    bad = tmp_path / "bad"
    bad.mkdir()
    _tar(bad / "sample_train.tar.gz", {"common_features_train.csv": b"",
                                       "sample_skeleton_train.csv": b"s1,1,0,x,0,\ns2,2,0\n"})
    _tar(bad / "sample_test.tar.gz", {"common_features_test.csv": b"",
                                      "sample_skeleton_test.csv": b""})
    err = fails("ali-ccp", "--data-dir", str(bad))
    assert "sample_train.tar.gz:sample_skeleton_train.csv, line 2" in err
    assert not (bad / "parquet").exists()
    assert "--country applies to aliexpress only" in fails(
        "ali-ccp", "--data-dir", str(bad), "--country", "NL")


# --- AliExpress in its published format ---------------------------------------------------
def make_aliexpress(directory: Path, country: str, rows: int = 1500, seed: int = 0
                    ) -> dict[str, pd.DataFrame]:
    """AliExpress_<country>.zip holding AliExpress_<country>/{train,test}.csv."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    frames = {}
    with zipfile.ZipFile(directory / f"AliExpress_{country}.zip", "w",
                         zipfile.ZIP_DEFLATED) as zf:
        for split in ("train", "test"):
            n = rows
            frame = pd.DataFrame({"search_id": rng.integers(0, n // 5, n)})
            for i, name in enumerate(CATEGORICAL):
                frame[name] = rng.integers(0, 5000 if i == 0 else 12, n)
            for name in NUMERICAL:
                frame[name] = rng.random(n).round(6)
            frame["click"] = (rng.random(n) < 0.3).astype(int)
            frame["conversion"] = frame["click"] * (rng.random(n) < 0.3)
            frame.loc[frame.index % 101 == 7, ["click", "conversion"]] = (0, 1)
            assert tuple(frame.columns) == HEADER
            zf.writestr(f"AliExpress_{country}/{split}.csv", frame.to_csv(index=False))
            frames[split] = frame
    return frames


def test_aliexpress_fetch_and_convert(serve, tmp_path):
    site = tmp_path / "site"
    frames = {c: make_aliexpress(site, c, seed=i) for i, c in enumerate(("NL", "US"))}
    url, requests = serve(site)
    out = tmp_path / "out"
    _fetch("aliexpress", "--data-dir", str(tmp_path / "data"), "--url", url, "--country",
           "nl,US", "--out", str(out))
    assert sorted(p for p, _ in requests) == ["/AliExpress_NL.zip", "/AliExpress_US.zip"]
    for country, frame in frames.items():
        kept = {s: f[~((f.click == 0) & (f.conversion == 1))] for s, f in frame.items()}
        held = in_valid(pa.array(kept["train"].search_id), 0.1)
        for split, want in (("train", kept["train"][~held]), ("valid", kept["train"][held]),
                            ("test", kept["test"])):
            got = _read(out / country / split)
            assert list(got.columns) == [*HEADER[:-1], "purchase"]
            assert got["search_id"].tolist() == want["search_id"].tolist()
            assert got[list(CATEGORICAL)].to_numpy().tolist() == \
                want[list(CATEGORICAL)].to_numpy().tolist()
            np.testing.assert_allclose(got[list(NUMERICAL)].to_numpy(),
                                       want[list(NUMERICAL)].to_numpy(), rtol=1e-6)
            assert got["purchase"].tolist() == want["conversion"].tolist()
        config = tomllib.loads((out / country / "mmoe.toml").read_text())
        assert config["features"]["categorical_1"] == {"kind": "hashed", "buckets": 4096}
        assert config["features"]["categorical_2"] == {"kind": "categorical"}
        assert "numerical_1" not in config["features"]
        assert config["columns"] == {"exclude": ["search_id"], "group_by": "search_id"}


def test_aliexpress_bad_header_names_the_file(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    with zipfile.ZipFile(data / "AliExpress_ES.zip", "w") as zf:
        zf.writestr("AliExpress_ES/train.csv", "search_id,click,buy\n1,0,0\n")
        zf.writestr("AliExpress_ES/test.csv", "search_id,click,buy\n1,0,0\n")
    with pytest.raises(SystemExit) as exit_:
        main(["data", "fetch", "aliexpress", "--data-dir", str(data), "--country", "ES"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "AliExpress_ES.zip:train.csv does not have the published header" in err
    assert "unexpected buy" in err and not (data / "parquet").exists()

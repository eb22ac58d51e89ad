"""Checksum-verified atomic downloads against a local HTTP server on 127.0.0.1."""

import hashlib
import os
import shutil
import socket
from pathlib import Path

import platformdirs
import pytest

from mmoe.cli import main
from mmoe.data.fetch import (
    DATASETS,
    DownloadError,
    dataset,
    download,
    ensure_census,
    fetch_dataset,
    resolve_data_dir,
    sha256_file,
)

PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
CENSUS_FILES = [f.name for f in DATASETS["census-income"].files]


@pytest.fixture
def site(tmp_path, serve):
    root = tmp_path / "site"
    root.mkdir()
    (root / "a.bin").write_bytes(PAYLOAD)
    url, requests = serve(root)
    return url, requests


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def _paths(requests) -> list[str]:
    return [path for path, _ in requests]


def test_download_success(site, tmp_path):
    url, requests = site
    dest = tmp_path / "out" / "a.bin"
    assert download(url + "a.bin", dest, PAYLOAD_SHA) == PAYLOAD_SHA
    assert dest.read_bytes() == PAYLOAD
    assert requests == [("/a.bin", None)]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["a.bin"]


def test_download_unpinned_returns_the_digest(site, tmp_path):
    url, _ = site
    assert download(url + "a.bin", tmp_path / "a.bin", None) == PAYLOAD_SHA


@pytest.mark.parametrize("kind", ["truncated", "chunked"])
def test_truncated_transfer_keeps_the_bytes_for_resume(site, tmp_path, kind):
    url, _ = site
    dest = tmp_path / "out" / "a.bin"
    # http.client drops the bytes of a chunk cut short: nothing arrives, nothing is kept
    kept = r"kept in .*a\.bin\.part: run the same command" if kind == "truncated" \
        else "nothing was kept"
    with pytest.raises(DownloadError, match=rf"{kind}/a.bin failed: truncated transfer.*{kept}"):
        download(f"{url}{kind}/a.bin", dest, PAYLOAD_SHA)
    assert not dest.exists()
    part = dest.parent / "a.bin.part"
    if kind == "truncated":
        assert part.read_bytes() == PAYLOAD[: len(PAYLOAD) // 2]
    else:
        assert not part.exists()
    assert _leftovers(dest.parent) == []


def test_resume_asks_for_the_rest(site, tmp_path):
    url, requests = site
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match="truncated"):
        download(url + "flaky/a.bin", dest, PAYLOAD_SHA)
    half = len(PAYLOAD) // 2
    assert (tmp_path / "a.bin.part").stat().st_size == half
    progress = []
    assert download(url + "flaky/a.bin", dest, PAYLOAD_SHA,
                    progress=lambda done, total: progress.append((done, total))) == PAYLOAD_SHA
    assert requests == [("/flaky/a.bin", None), ("/flaky/a.bin", f"bytes={half}-")]
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "a.bin.part").exists()
    assert progress[-1] == (len(PAYLOAD), len(PAYLOAD)) and progress[0][0] > half


def test_resume_from_a_server_that_ignores_ranges_starts_over(site, tmp_path):
    url, requests = site
    (tmp_path / "a.bin.part").write_bytes(b"junk that is not the start of the file")
    assert download(url + "norange/a.bin", tmp_path / "a.bin", PAYLOAD_SHA) == PAYLOAD_SHA
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert requests[0][1] is not None  # it asked for a range and got the whole body


def test_resume_past_the_end_starts_over(site, tmp_path):
    url, requests = site
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD + b"extra")
    assert download(url + "a.bin", tmp_path / "a.bin", PAYLOAD_SHA) == PAYLOAD_SHA
    assert requests == [("/a.bin", f"bytes={len(PAYLOAD) + 5}-"), ("/a.bin", None)]
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_resume_disabled_starts_over(site, tmp_path):
    url, requests = site
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:1000])
    download(url + "a.bin", tmp_path / "a.bin", PAYLOAD_SHA, resume=False)
    assert requests == [("/a.bin", None)]


def test_a_download_in_progress_is_not_joined(site, tmp_path):
    import fcntl

    url, requests = site
    with open(tmp_path / "a.bin.part", "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(DownloadError, match="another process is writing"):
            download(url + "a.bin", tmp_path / "a.bin", PAYLOAD_SHA)
    assert requests == [] and not (tmp_path / "a.bin").exists()


def test_checksum_mismatch_leaves_nothing(site, tmp_path):
    url, _ = site
    dest = tmp_path / "out" / "a.bin"
    with pytest.raises(DownloadError, match=r"checksum mismatch for http://127.0.0.1:\d+/a.bin"):
        download(url + "a.bin", dest, "0" * 64)
    assert not dest.exists()
    assert _leftovers(dest.parent) == []


def test_http_error_and_unreachable(site, tmp_path):
    url, _ = site
    with pytest.raises(DownloadError, match="missing.bin failed: HTTP error 404"):
        download(url + "missing.bin", tmp_path / "m.bin", PAYLOAD_SHA)
    with pytest.raises(DownloadError, match="cannot reach the server"):
        download(_closed_port_url() + "a.bin", tmp_path / "m.bin", PAYLOAD_SHA, timeout=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_download_error_is_a_user_error():
    assert issubclass(DownloadError, OSError) and issubclass(DownloadError, ValueError)


def test_failed_download_never_destroys_existing_file(site, tmp_path):
    url, _ = site
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"the good file")
    with pytest.raises(DownloadError, match="truncated"):
        download(url + "truncated/a.bin", dest, PAYLOAD_SHA)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(url + "a.bin", dest, "0" * 64, resume=False)
    assert dest.read_bytes() == b"the good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "site"]


def test_fetch_census_downloads_then_keeps(census_dir, serve, tmp_path, monkeypatch):
    url, requests = serve(census_dir)
    monkeypatch.setenv("MMOE_CENSUS_URL", url)
    target = tmp_path / "cache"
    assert fetch_dataset("census-income", target) == target
    assert sorted(_paths(requests)) == sorted("/" + n for n in CENSUS_FILES)
    for name in CENSUS_FILES:
        assert sha256_file(target / name) == sha256_file(census_dir / name)
    # present and verified: no request at all
    assert ensure_census(target, download=True) == target
    assert len(requests) == 2
    # a corrupt file is replaced by a verified download, the good one is kept
    (target / CENSUS_FILES[0]).write_bytes(b"corrupt")
    fetch_dataset("census-income", target)
    assert _paths(requests[2:]) == ["/" + CENSUS_FILES[0]]
    assert sha256_file(target / CENSUS_FILES[0]) == DATASETS["census-income"].files[0].sha256


def test_fetch_failure_keeps_directory_clean(serve, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    url, _ = serve(empty)
    target = tmp_path / "cache"
    with pytest.raises(DownloadError, match=f"{CENSUS_FILES[0]} failed: HTTP error 404"):
        fetch_dataset("census-income", target, base_url=url)
    assert list(target.iterdir()) == []


def test_ensure_census_uses_local_files_without_network(census_dir, monkeypatch):
    monkeypatch.setenv("MMOE_CENSUS_URL", _closed_port_url())
    assert ensure_census(census_dir) == census_dir
    assert ensure_census(census_dir, download=True) == census_dir
    monkeypatch.setenv("MMOE_DATA_DIR", str(census_dir))
    assert ensure_census(None) == census_dir


def test_ensure_census_missing_says_how_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match="mmoe data fetch census-income --data-dir"):
        ensure_census(tmp_path)


def test_ensure_census_corrupt_file(census_dir, tmp_path):
    for name in CENSUS_FILES:
        shutil.copy(census_dir / name, tmp_path / name)
    with open(tmp_path / CENSUS_FILES[1], "r+b") as f:  # same size, one byte changed
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ValueError, match=f"{CENSUS_FILES[1]} has the wrong size or sha256"):
        ensure_census(tmp_path)


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MMOE_DATA_DIR", raising=False)
    default = Path(platformdirs.user_cache_dir("mmoe")) / "census-income"
    assert resolve_data_dir(None) == default
    monkeypatch.setenv("MMOE_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_base_url_precedence(monkeypatch):
    ds = dataset("census-income")
    monkeypatch.delenv("MMOE_CENSUS_URL", raising=False)
    assert ds.url() == "https://archive.ics.uci.edu/ml/machine-learning-databases/" \
                       "census-income-mld/"
    monkeypatch.setenv("MMOE_CENSUS_URL", "http://127.0.0.1:1/mirror")
    assert ds.url() == "http://127.0.0.1:1/mirror/"
    assert ds.url("http://127.0.0.1:2/x/") == "http://127.0.0.1:2/x/"
    with pytest.raises(ValueError, match="data set name must be one of ali-ccp, aliexpress, "
                                         "census-income"):
        dataset("census")


def test_cli_fetch(census_dir, serve, tmp_path, monkeypatch, capsys):
    url, _ = serve(census_dir)
    monkeypatch.setenv("MMOE_CENSUS_URL", url)
    with pytest.raises(SystemExit) as exit_:
        main(["data", "fetch", "census-income", "--data-dir", str(tmp_path / "d")])
    assert exit_.value.code in (0, None)
    assert f"census-income: ready in {tmp_path / 'd'}" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(CENSUS_FILES)


@pytest.mark.parametrize("args, message", [
    (["nope"], "data set name must be one of ali-ccp, aliexpress, census-income"),
    (["census-income"], "HTTP error 404"),
])
def test_cli_fetch_errors(serve, tmp_path, monkeypatch, capsys, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    url, _ = serve(empty)
    monkeypatch.setenv("MMOE_CENSUS_URL", url)
    with pytest.raises(SystemExit) as exit_:
        main(["data", "fetch", *args, "--data-dir", str(tmp_path / "d")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("mmoe: error: ") and message in err and err.count("\n") == 1

"""Checksum-verified, atomic downloads of public data sets, and where data lives on disk.

A download streams into a temporary file in the destination directory, checks the byte
count against ``Content-Length`` and the sha256 against the table below, ``fsync``s and only
then ``os.replace``s it onto the final name. A failed or interrupted download never leaves a
half file under the final name and never touches a good file already there.

Where data lives (:func:`resolve_data_dir`): the ``--data-dir`` argument, else
``$MMOE_DATA_DIR``, else ``<user cache dir>/mmoe/<data set>``. An explicit directory is the
directory holding the files themselves (for example ``../shared/data/census-income``).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import _checks
from .._fileio import AtomicFile, sha256_file

DATA_DIR_ENV = "MMOE_DATA_DIR"
_CHUNK = 1 << 16


class DownloadError(OSError, ValueError):
    """A download failed: HTTP error, unreachable host, truncated transfer or bad checksum.

    It is an ``OSError`` (I/O failed) and a ``ValueError`` (the library's user-error type, so
    the command line reports it as one line with exit code 2).
    """


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: its name in the remote directory, sha256 and size in bytes."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class RemoteDataset:
    """A data set published as files in one remote directory.

    Args:
        name: the data set's name on the command line (``mmoe data fetch NAME``).
        base_url: the directory URL; files are fetched from ``base_url + file.name``.
        url_env: environment variable that overrides ``base_url`` (mirrors, tests).
        files: the files, with the checksums they must have.
    """

    name: str
    base_url: str
    url_env: str
    files: tuple[RemoteFile, ...]

    def url(self, base_url: str | None = None) -> str:
        """The directory URL: the argument, else ``$url_env``, else ``base_url``."""
        url = base_url or os.environ.get(self.url_env) or self.base_url
        return url if url.endswith("/") else url + "/"


# Checksums and sizes: ../shared/data/census-income/SOURCE.md (byte-identical UCI files).
DATASETS: dict[str, RemoteDataset] = {
    "census-income": RemoteDataset(
        name="census-income",
        base_url="https://archive.ics.uci.edu/ml/machine-learning-databases/census-income-mld/",
        url_env="MMOE_CENSUS_URL",
        files=(
            RemoteFile("census-income.data.gz",
                       "5af0244397fa52b5ac93ef5fd8293426b6bc04a30adb6c15f5e527e4dcbef33a",
                       6_524_485),
            RemoteFile("census-income.test.gz",
                       "5ac4cacd3ca9f1ecb10de1a0a41e4ac68fdc419e3fec190f5c0c6cc03b2ea659",
                       3_261_416),
        ),
    ),
}


def dataset(name: str) -> RemoteDataset:
    """The table entry for ``name``, or a ``ValueError`` listing the known data sets."""
    _checks.one_of(name, sorted(DATASETS), "data set name")
    return DATASETS[name]


def resolve_data_dir(data_dir: str | Path | None, dataset_name: str = "census-income") -> Path:
    """Where a data set's files live.

    Args:
        data_dir: explicit directory holding the files (``--data-dir``); ``None`` falls back
            to ``$MMOE_DATA_DIR``, then to ``platformdirs.user_cache_dir("mmoe")/<name>``.
        dataset_name: sub-directory of the user cache dir used in the last case.

    Returns:
        The directory (not created, not checked).

    Example:
        >>> resolve_data_dir("/data/census").as_posix()
        '/data/census'
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mmoe")) / dataset_name


def download(url: str, dest: str | Path, sha256: str, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying length and sha256.

    The body streams into a temporary file beside ``dest``; only a complete transfer with
    the expected checksum is renamed onto ``dest`` (:class:`mmoe._fileio.AtomicFile`). On any
    failure the temporary file is removed and ``dest`` (if it existed) is left as it was.

    Args:
        url: the file's URL.
        dest: final path of the file; its directory is created if needed.
        sha256: expected hex sha256 of the body.
        timeout: socket timeout in seconds.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        DownloadError: HTTP error, unreachable host, truncated transfer or checksum mismatch;
            the message names the URL and what failed.

    Example:
        >>> download("http://127.0.0.1:9/a.gz", tmp_path / "a.gz", "0" * 64)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mmoe.data.fetch.DownloadError: download of http://127.0.0.1:9/a.gz failed: cannot ...
    """
    dest = Path(dest)
    with AtomicFile(dest) as out:
        got, digest = _stream(url, out.handle, timeout)
        if digest != sha256.lower():
            raise DownloadError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest} "
                f"({got} bytes); the file was not saved")
    return dest


def _stream(url: str, out, timeout: float) -> tuple[int, str]:
    """Copy the body of ``url`` into ``out``; return (bytes, sha256) or raise DownloadError."""
    h = hashlib.sha256()
    got = 0
    expected: int | None = None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            expected = int(length) if length is not None and length.isdigit() else None
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                out.write(chunk)
                h.update(chunk)
                got += len(chunk)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"download of {url} failed: HTTP error {err.code} {err.reason}") \
            from err
    except http.client.IncompleteRead as err:
        raise DownloadError(f"download of {url} failed: truncated transfer (connection closed "
                            f"after {got + len(err.partial)} bytes)") from err
    except urllib.error.URLError as err:
        raise DownloadError(f"download of {url} failed: cannot reach the server ({err.reason})") \
            from err
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(f"download of {url} failed after {got} bytes: {err}") from err
    if expected is not None and got != expected:
        raise DownloadError(f"download of {url} failed: truncated transfer (got {got} of "
                            f"{expected} bytes announced by Content-Length)")
    return got, h.hexdigest()


def _good(path: Path, file: RemoteFile) -> bool:
    """True when ``path`` exists with the expected size and sha256."""
    return (path.is_file() and path.stat().st_size == file.size
            and sha256_file(path) == file.sha256)


def fetch_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    base_url: str | None = None,
    timeout: float = 60.0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Make sure every file of data set ``name`` is in ``data_dir``, downloading what is missing.

    Files already present with the right checksum are kept and nothing is requested for
    them; missing or corrupt files are downloaded (atomically: a corrupt file is replaced
    only by a verified one).

    Args:
        name: a key of :data:`DATASETS` (``census-income``).
        data_dir: target directory, resolved by :func:`resolve_data_dir`.
        base_url: overrides the data set's directory URL (else ``$MMOE_CENSUS_URL`` etc.).
        timeout: socket timeout per request, in seconds.
        log: called with one line per file (present / downloaded).

    Returns:
        The directory holding the verified files.

    Example:
        >>> fetch_dataset("census-income", census_dir) == census_dir  # present: kept
        True
    """
    ds = dataset(name)
    directory = resolve_data_dir(data_dir, ds.name)
    for file in ds.files:
        path = directory / file.name
        if _good(path, file):
            if log:
                log(f"{path}: present, checksum ok")
            continue
        url = ds.url(base_url) + file.name
        download(url, path, file.sha256, timeout=timeout)
        if log:
            log(f"{path}: downloaded from {url}, checksum ok")
    return directory


def ensure_census(
    data_dir: str | Path | None = None,
    download: bool = False,
    *,
    base_url: str | None = None,
) -> Path:
    """The directory holding verified Census-Income files, downloading them only if allowed.

    When the files are present with the right checksums, nothing touches the network.

    Args:
        data_dir: ``--data-dir``; ``None``: ``$MMOE_DATA_DIR``, else the user cache dir.
        download: fetch missing or corrupt files from UCI (or ``base_url`` /
            ``$MMOE_CENSUS_URL``).
        base_url: overrides the download directory URL.

    Returns:
        The directory holding ``census-income.data.gz`` and ``census-income.test.gz``.

    Raises:
        FileNotFoundError: files missing and ``download`` is false (says how to get them).
        ValueError: a file is present but its checksum is wrong and ``download`` is false.
        DownloadError: the download failed.

    Example:
        >>> ensure_census(census_dir) == census_dir
        True
    """
    ds = DATASETS["census-income"]
    directory = resolve_data_dir(data_dir, ds.name)
    if download:
        return fetch_dataset(ds.name, directory, base_url=base_url)
    for file in ds.files:
        path = directory / file.name
        if not path.is_file():
            raise FileNotFoundError(
                f"census-income: {path} not found; run `mmoe data fetch census-income "
                f"--data-dir {directory}` to download it, or point --data-dir / "
                f"${DATA_DIR_ENV} at a directory holding {', '.join(f.name for f in ds.files)}")
        if not _good(path, file):
            _checks.fail(
                f"census-income: {path} has the wrong size or sha256 (expected {file.sha256}); "
                f"delete it and run `mmoe data fetch census-income --data-dir {directory}`")
    return directory

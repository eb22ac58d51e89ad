"""Public data sets: which files they are, where they live on disk, and fetching them.

Downloads are resumable and checksum-verified (:mod:`mmoe.data.download`): a file under its
final name is always whole. Files whose sha256 is pinned in the table below are checked
against it. Where no checksum could be pinned (hosts that need a login, unreachable from where
this table was written: Ali-CCP, AliExpress), the digest of the first complete copy is
recorded in ``SHA256SUMS`` in the data directory (``sha256sum -c SHA256SUMS`` reads it) and
every later use is checked against that record: it catches a file damaged or replaced after
the first fetch, not a bad first copy.

Where data lives (:func:`resolve_data_dir`): the ``--data-dir`` argument, else
``$MMOE_DATA_DIR``, else ``<user cache dir>/mmoe/<data set>``. An explicit directory is the
directory holding the files themselves (for example ``../shared/data/census-income``).
Files already there (downloaded by hand, say) are used without touching the network.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import _checks
from .._fileio import sha256_file, write_text
from .download import DownloadError, download

__all__ = ["DATASETS", "DownloadError", "RemoteDataset", "RemoteFile", "dataset", "download",
           "ensure_census", "fetch_dataset", "resolve_data_dir", "sha256_file"]

DATA_DIR_ENV = "MMOE_DATA_DIR"
MANIFEST = "SHA256SUMS"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: its name in the remote directory, and its sha256 and size in
    bytes when they are pinned (``None``: recorded in ``SHA256SUMS`` at the first fetch)."""

    name: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class RemoteDataset:
    """A data set published as files in one remote directory.

    Args:
        name: the data set's name on the command line (``mmoe data fetch NAME``).
        base_url: the directory URL; files are fetched from ``base_url + file.name``
            (``None``: no public direct link; a mirror is given by ``url_env`` or ``--url``,
            or the files are downloaded by hand from ``page``).
        url_env: environment variable that overrides ``base_url`` (mirrors, tests).
        files: the files, with the checksums they must have.
        page: where a person finds the files.
    """

    name: str
    base_url: str | None
    url_env: str
    files: tuple[RemoteFile, ...]
    page: str = ""

    def url(self, base_url: str | None = None) -> str | None:
        """The directory URL: the argument, else ``$url_env``, else ``base_url``."""
        url = base_url or os.environ.get(self.url_env) or self.base_url
        if not url:
            return None
        return url if url.endswith("/") else url + "/"


ALIEXPRESS_COUNTRIES = ("NL", "ES", "FR", "US")

# Census checksums and sizes: ../shared/data/census-income/SOURCE.md (byte-identical UCI
# files). Ali-CCP and AliExpress: Tianchi serves them only to logged-in users, through links
# that expire, so nothing is pinned (see the module docstring).
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
        page="https://archive.ics.uci.edu/dataset/117/census+income+kdd",
    ),
    "ali-ccp": RemoteDataset(
        name="ali-ccp",
        base_url=None,
        url_env="MMOE_ALI_CCP_URL",
        files=(RemoteFile("sample_train.tar.gz"), RemoteFile("sample_test.tar.gz")),
        page="https://tianchi.aliyun.com/dataset/408",
    ),
    "aliexpress": RemoteDataset(
        name="aliexpress",
        base_url=None,
        url_env="MMOE_ALIEXPRESS_URL",
        files=tuple(RemoteFile(f"AliExpress_{c}.zip") for c in ALIEXPRESS_COUNTRIES),
        page="https://tianchi.aliyun.com/dataset/74690",
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


def recorded_checksums(directory: str | Path) -> dict[str, str]:
    """The digests recorded in ``directory/SHA256SUMS`` (``sha256sum`` format), by file name.

    Example:
        >>> _ = (tmp_path / "SHA256SUMS").write_text("ab" * 32 + "  a.zip\\n")
        >>> recorded_checksums(tmp_path) == {"a.zip": "ab" * 32}
        True
    """
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.strip().partition("  ")
        if len(digest) == 64 and name:
            sums[name.lstrip("*")] = digest.lower()
    return sums


def _record(directory: Path, name: str, digest: str) -> None:
    sums = recorded_checksums(directory) | {name: digest}
    write_text(directory / MANIFEST, "".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))


def _expected(file: RemoteFile, directory: Path) -> str | None:
    return file.sha256 or recorded_checksums(directory).get(file.name)


def _verified(path: Path, file: RemoteFile) -> bool | None:
    """Whether ``path`` holds ``file``: ``None`` when it is missing, else whether its size and
    sha256 match (a file with no checksum pinned or recorded yet gets its digest recorded)."""
    if not path.is_file():
        return None
    if file.size is not None and path.stat().st_size != file.size:
        return False
    expected = _expected(file, path.parent)
    digest = sha256_file(path)
    if expected is None:
        _record(path.parent, file.name, digest)
        return True
    return digest == expected


def _selected(ds: RemoteDataset, names: Sequence[str] | None) -> tuple[RemoteFile, ...]:
    if names is None:
        return ds.files
    known = {f.name: f for f in ds.files}
    for name in names:
        _checks.one_of(name, sorted(known), f"{ds.name}: file")
    return tuple(known[n] for n in names)


def fetch_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    files: Sequence[str] | None = None,
    base_url: str | None = None,
    timeout: float = 60.0,
    log: Callable[[str], None] | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> Path:
    """Make sure every file of data set ``name`` is in ``data_dir``, downloading what is missing.

    Files already present with the right checksum are kept and nothing is requested for
    them; missing or corrupt files are downloaded (resumably, and a corrupt file is replaced
    only by a verified one).

    Args:
        name: a key of :data:`DATASETS`.
        data_dir: target directory, resolved by :func:`resolve_data_dir`.
        files: the names of the files wanted (``None``: all of the data set's).
        base_url: overrides the data set's directory URL (else ``$MMOE_CENSUS_URL`` etc.).
        timeout: socket timeout per request, in seconds.
        log: called with one line per file (present / downloaded).
        progress: called as ``progress(file name, bytes so far, total or None)`` while a file
            downloads.

    Returns:
        The directory holding the verified files.

    Raises:
        FileNotFoundError: a file is missing and the data set has no download URL (the
            message says where to get it by hand).
        DownloadError: a download failed.

    Example:
        >>> fetch_dataset("census-income", census_dir) == census_dir  # present: kept
        True
    """
    ds = dataset(name)
    directory = resolve_data_dir(data_dir, ds.name)
    for file in _selected(ds, files):
        path = directory / file.name
        state = _verified(path, file)
        if state:
            if log:
                log(f"{path}: present, checksum ok")
            continue
        url = ds.url(base_url)
        if url is None:
            what = "not found" if state is None else "has the wrong sha256"
            raise FileNotFoundError(
                f"{ds.name}: {path} {what}, and the data set has no public direct link: "
                f"download {file.name} from {ds.page} (a free account may be needed) into "
                f"{directory}, or give a mirror with --url or ${ds.url_env}")
        expected = file.sha256 if state is None else _expected(file, directory)
        digest = download(url + file.name, path, expected, timeout=timeout,
                          progress=None if progress is None
                          else lambda done, total, n=file.name: progress(n, done, total))
        if file.sha256 is None:
            _record(directory, file.name, digest)
        if log:
            log(f"{path}: downloaded from {url + file.name}, sha256 {digest}")
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
        if not _verified(path, file):
            _checks.fail(
                f"census-income: {path} has the wrong size or sha256 (expected {file.sha256}); "
                f"delete it and run `mmoe data fetch census-income --data-dir {directory}`")
    return directory

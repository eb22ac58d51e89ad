"""Resumable, checksum-verified downloads over HTTP(S).

A download streams into ``NAME.part`` beside its destination. An interrupted transfer keeps
what arrived there, and the next call asks the server for the rest (an HTTP ``Range``
request); a server that ignores ranges sends the whole file again, which is then written
from the start. Only a complete body (its length checked against ``Content-Length`` /
``Content-Range``) whose sha256 matches is ``fsync``ed and renamed onto ``NAME``, so a file
under its final name is always whole, and a good file already there is never touched by a
failed download. A checksum mismatch deletes the partial file: resuming it would repeat the
mismatch. Two processes downloading the same file do not interleave: the partial file is
locked (``flock``) while written.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .._fileio import fsync_dir

_CHUNK = 1 << 16
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(OSError, ValueError):
    """A download failed: HTTP error, unreachable host, truncated transfer or bad checksum.

    It is an ``OSError`` (I/O failed) and a ``ValueError`` (the library's user-error type, so
    the command line reports it as one line with exit code 2).
    """


def partial_path(dest: str | os.PathLike) -> Path:
    """Where the bytes of an unfinished download of ``dest`` are kept: ``NAME.part``.

    Example:
        >>> partial_path("/data/a.tar.gz").name
        'a.tar.gz.part'
    """
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def download(url: str, dest: str | os.PathLike, sha256: str | None, *,
             timeout: float = 60.0, resume: bool = True,
             progress: Callable[[int, int | None], None] | None = None) -> str:
    """Download ``url`` to ``dest``, resuming a partial download, verifying length and sha256.

    Args:
        url: the file's URL.
        dest: final path of the file; its directory is created if needed.
        sha256: expected hex sha256 of the body (``None``: not known in advance; the caller
            records the returned digest).
        timeout: socket timeout in seconds.
        resume: continue from ``NAME.part`` when one is there (else start over).
        progress: called as ``progress(bytes so far, total or None)`` as the body arrives.

    Returns:
        The hex sha256 of the file now at ``dest``.

    Raises:
        DownloadError: HTTP error, unreachable host, truncated transfer (the bytes that
            arrived stay in ``NAME.part`` for the next call) or checksum mismatch (nothing
            kept); the message names the URL and what failed.

    Example:
        >>> download("http://127.0.0.1:9/a.gz", tmp_path / "a.gz", "0" * 64)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mmoe.data.download.DownloadError: download of http://127.0.0.1:9/a.gz failed: cannot ...
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    with _locked_append(part, url) as out:
        if not resume:
            out.truncate(0)
        digest = _transfer(url, out, timeout, progress)
        out.flush()
        os.fsync(out.fileno())
        if sha256 is not None and digest != sha256.lower():
            size = out.tell()
            part.unlink()
            raise DownloadError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest} "
                f"({size} bytes); the file was not saved")
        os.replace(part, dest)
    fsync_dir(dest.parent)
    return digest


@contextlib.contextmanager
def _locked_append(part: Path, url: str) -> Iterator[BinaryIO]:
    """``part`` opened for reading and appending, locked against other downloaders."""
    with open(part, "a+b") as out:
        try:
            import fcntl

            fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not a POSIX system: no locking
            pass
        except BlockingIOError:
            raise DownloadError(f"download of {url} failed: another process is writing "
                                f"{part}; wait for it to finish") from None
        try:
            yield out
        finally:  # nothing arrived (HTTP error, no server): leave no empty partial file
            if not out.closed and out.seek(0, os.SEEK_END) == 0 and part.exists():
                part.unlink()


def _transfer(url: str, out: BinaryIO, timeout: float,
              progress: Callable[[int, int | None], None] | None) -> str:
    """Complete the body of ``url`` in ``out`` (which may hold its first bytes already);
    return the sha256 of the whole body."""
    offset = out.seek(0, os.SEEK_END)
    try:
        resp = _open(url, offset, timeout)
    except _RangeRefused:
        out.truncate(0)
        offset, resp = 0, _open(url, 0, timeout)
    with resp:
        if offset and resp.status != 206:  # the server ignored the range: start over
            out.truncate(0)
            offset = 0
        h = _hash_prefix(out, offset)
        total = _expected_total(resp, offset)
        got = offset
        try:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                out.write(chunk)
                h.update(chunk)
                got += len(chunk)
                if progress is not None:
                    progress(got, total)
        except http.client.IncompleteRead as err:
            out.write(err.partial)
            got += len(err.partial)
            raise _truncated(url, out, f"connection closed after {got} bytes") from err
        except (OSError, http.client.HTTPException) as err:
            raise _truncated(url, out, f"{err} after {got} bytes") from err
    if total is not None and got != total:
        raise _truncated(url, out, f"got {got} of {total} bytes announced by the server")
    return h.hexdigest()


class _RangeRefused(Exception):
    """HTTP 416: the partial file is not a prefix the server can continue."""


def _open(url: str, offset: int, timeout: float):
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            raise _RangeRefused from err
        raise DownloadError(f"download of {url} failed: HTTP error {err.code} {err.reason}") \
            from err
    except urllib.error.URLError as err:
        raise DownloadError(f"download of {url} failed: cannot reach the server ({err.reason})") \
            from err
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(f"download of {url} failed: {err}") from err


def _hash_prefix(out: BinaryIO, size: int):
    """A sha256 fed with the first ``size`` bytes of ``out`` (the file position is kept at
    its end)."""
    h = hashlib.sha256()
    out.seek(0)
    left = size
    while left > 0:
        block = out.read(min(_CHUNK * 16, left))
        if not block:
            break
        h.update(block)
        left -= len(block)
    out.seek(0, os.SEEK_END)
    return h


def _expected_total(resp, offset: int) -> int | None:
    """The full body's size announced by the response, if any."""
    if resp.status == 206:
        match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if match is None or int(match.group(1)) != offset:
            raise DownloadError(f"download of {resp.url} failed: the server answered a request "
                                f"for bytes {offset}- with Content-Range "
                                f"'{resp.headers.get('Content-Range')}'")
        return None if match.group(3) == "*" else int(match.group(3))
    length = resp.headers.get("Content-Length")
    return int(length) if length is not None and length.isdigit() else None


def _truncated(url: str, out: BinaryIO, what: str) -> DownloadError:
    out.flush()
    os.fsync(out.fileno())
    kept = out.seek(0, os.SEEK_END)
    where = (f"the {kept} bytes received are kept in {out.name}: run the same command again "
             "to resume" if kept else "nothing was kept")
    return DownloadError(f"download of {url} failed: truncated transfer ({what}); {where}")

"""The one atomic writer: every file the package writes goes through :class:`AtomicFile`.

A file is written to a temporary name beside its destination, flushed to disk (``fsync``),
given the mode the process's umask allows (0644 under umask 022, like any new file) and
renamed over the destination; the rename is then made durable by an ``fsync`` of the
directory. A kill at any moment leaves the old file or the new one, never half of one, and a
failure leaves the destination as it was. Directories built by :func:`atomic_dir` follow the
same rule (staged under a temporary name, renamed into place, mode from the umask).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it: set and restore at once
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new regular file under the current umask (0o644 under 022)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """Mode of a new directory under the current umask (0o755 under 022)."""
    return 0o777 & ~_umask()


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make renames in ``directory`` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Transaction:
    """A write that is committed when its ``with`` block ends without an error, and aborted
    (nothing of it left, the destination as it was) when the block raises."""

    def commit(self) -> Path:
        """Make the write visible under its final name."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the write."""
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class AtomicFile(Transaction):
    """A file written under a temporary name and moved over ``path`` by :meth:`commit`.

    Args:
        path: the destination (its directory is created).
        binary: open the temporary file in binary mode (else text, UTF-8).

    ``handle`` is the open temporary file; ``tmp`` its path, for writers that want a name
    (matplotlib, pyarrow, torch). :meth:`abort` (or leaving the ``with`` block on an error)
    deletes it and leaves ``path`` untouched.

    Example:
        >>> with AtomicFile(tmp_path / "a.txt", binary=False) as f:
        ...     _ = f.handle.write("hello")
        >>> (tmp_path / "a.txt").read_text(), oct((tmp_path / "a.txt").stat().st_mode & 0o777)
        ('hello', '0o644')
    """

    def __init__(self, path: str | os.PathLike, binary: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                   dir=self.path.parent)
        self.tmp = Path(tmp)
        self.handle: IO[Any] = os.fdopen(fd, "wb" if binary else "w",
                                         **({} if binary else {"encoding": "utf-8"}))

    def commit(self) -> Path:
        """Flush, fsync, set the umask's mode and rename over ``path``; returns ``path``."""
        try:
            if not self.handle.closed:
                self.handle.flush()
                os.fsync(self.handle.fileno())
                self.handle.close()
            else:  # a writer closed it (pyarrow sinks): reopen to fsync
                with open(self.tmp, "rb") as fh:
                    os.fsync(fh.fileno())
            os.chmod(self.tmp, file_mode())
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; ``path`` stays as it was."""
        with contextlib.suppress(OSError):
            self.handle.close()
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that opens files by name; committed to
    ``path`` when the block ends without an error.

    Example:
        >>> with atomic_path(tmp_path / "b.bin") as tmp:
        ...     _ = tmp.write_bytes(b"x")
        >>> (tmp_path / "b.bin").read_bytes()
        b'x'
    """
    with AtomicFile(path) as f:
        f.handle.close()  # the caller writes by name
        yield f.tmp


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with AtomicFile(path) as f:
        f.handle.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any, default: Callable[[Any], Any] | None = str,
               indent: int | None = 2) -> Path:
    """Write ``data`` as JSON (one trailing newline) atomically; returns the path."""
    return write_text(path, json.dumps(data, indent=indent, default=default) + "\n")


def write_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically and close it; returns the path."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return Path(path)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks.

    Example:
        >>> sha256_file(write_bytes(tmp_path / "c", b"abc"))[:12]
        'ba7816bf8f01'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """A staging directory beside ``path``, renamed to ``path`` when the block succeeds.

    Files inside are written by the caller (with :class:`AtomicFile` or directly: the
    directory is invisible under its final name until the rename) and fsynced here before it.
    ``path`` may exist only if it is empty, or with ``replace`` (the old directory is moved
    aside and removed once the new one is in place). On an error the staging directory is
    removed and ``path`` is left as it was.

    Example:
        >>> with atomic_dir(tmp_path / "d") as stage:
        ...     _ = (stage / "x.txt").write_text("1")
        >>> sorted(p.name for p in (tmp_path / "d").iterdir())
        ['x.txt']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield stage
        for p in sorted(stage.rglob("*")):
            if p.is_file():
                with open(p, "rb") as fh:
                    os.fsync(fh.fileno())
            elif p.is_dir():
                os.chmod(p, dir_mode())
        os.chmod(stage, dir_mode())
        old = None
        if path.exists() and any(path.iterdir()):
            if not replace:
                raise FileExistsError(f"'{path}' exists and is not empty")
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / "dir")
        elif path.exists():
            path.rmdir()  # empty: a rename cannot replace it on every platform
        os.replace(stage, path)
        fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise

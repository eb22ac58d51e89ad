"""The one atomic writer: every file the package writes goes through :class:`AtomicFile`.

A file is written to a temporary name beside its destination, flushed to disk (``fsync``),
given the mode the process's umask allows (0644 under umask 022, like any new file) and
renamed over the destination; the rename is then made durable by an ``fsync`` of the
directory. A kill at any moment leaves the old file or the new one, never half of one, and a
failure leaves the destination as it was. Directories built by :func:`atomic_dir` follow the
same rule (staged under a temporary name, renamed into place, mode from the umask).

Temporary names beside a destination ``NAME`` are ``.NAME.tmp-PID-*`` (files and staging
directories), ``.NAME.old-PID-*`` (a directory being replaced) and ``.NAME.probe-PID-*``; the
writer's pid lets :func:`clean_leftovers`, run before every write, remove what a killed writer
left without touching the work of one still running.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
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


def _temp_prefix(path: str | os.PathLike, kind: str = "tmp") -> str:
    """Prefix of a temporary name beside ``path``: ``.NAME.KIND-PID-``."""
    return f".{Path(path).name}.{kind}-{os.getpid()}-"


_LEFTOVER = re.compile(r"(tmp|old|probe)-([0-9]{1,10})-")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` may still be running (when unsure: yes)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def clean_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove what killed writers of ``path`` left beside it: temporary files, staging
    directories, probes. A directory moved aside to be replaced (``.NAME.old-PID-*``) is put
    back when ``path`` is missing (the writer died between the two renames: the old one is
    kept, whole), else removed. Names of writers still running are left alone.

    Args:
        path: the destination whose leftovers to clean.

    Returns:
        The leftovers handled.

    Example:
        >>> _ = (tmp_path / ".out.csv.tmp-999999999-x.tmp").write_text("half")
        >>> [p.name for p in clean_leftovers(tmp_path / "out.csv")], list(tmp_path.iterdir())
        (['.out.csv.tmp-999999999-x.tmp'], [])
    """
    path = Path(path)
    prefix = f".{path.name}."
    try:
        names = sorted(n for n in os.listdir(path.parent) if n.startswith(prefix))
    except OSError:
        return []
    done = []
    for name in names:
        found = _LEFTOVER.match(name, len(prefix))
        if found is None or _alive(int(found.group(2))):
            continue
        leftover = path.parent / name
        moved = leftover / "dir"
        if found.group(1) == "old" and not os.path.lexists(path) and moved.is_dir():
            os.replace(moved, path)
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                leftover.unlink()
        done.append(leftover)
    return done


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
        clean_leftovers(self.path)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(self.path), suffix=".tmp",
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


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in dicts, lists, tuples) as ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_text(data: Any, default: Callable[[Any], Any] | None = str,
              indent: int | None = 2) -> str:
    """``data`` as strict JSON: an undefined number (NaN, inf) is ``null``, never the
    ``NaN`` other tools refuse to parse.

    Args:
        data: JSON-able data.
        default: converts what JSON cannot hold (its result is made strict too).
        indent: as :func:`json.dumps`.

    Returns:
        The text (no trailing newline).

    Example:
        >>> json_text({"auc": float("nan"), "n": [1.5, float("inf")]}, indent=None)
        '{"auc": null, "n": [1.5, null]}'
    """
    strict = None if default is None else (lambda value: _finite(default(value)))
    return json.dumps(_finite(data), indent=indent, default=strict, allow_nan=False)


def write_json(path: str | os.PathLike, data: Any, default: Callable[[Any], Any] | None = str,
               indent: int | None = 2) -> Path:
    """Write ``data`` as strict JSON (:func:`json_text`, one trailing newline) atomically;
    returns the path."""
    return write_text(path, json_text(data, default, indent) + "\n")


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
def atomic_dir(path: str | os.PathLike,
               replace: bool | Callable[[Path], None] = False) -> Iterator[Path]:
    """A staging directory beside ``path``, renamed to ``path`` when the block succeeds.

    Files inside are written by the caller (with :class:`AtomicFile` or directly: the
    directory is invisible under its final name until the rename) and fsynced here before it.
    ``path`` (a symbolic link to a directory stands for that directory) may exist only if it is
    empty, or with ``replace``: the old directory is moved aside and removed once the new one
    is in place. ``replace`` may be a check, called with ``path`` just before that, which
    raises to refuse. On an error the staging directory is removed and ``path`` is left as it
    was; what a killed run left beside ``path`` is cleaned up first (:func:`clean_leftovers`).

    Example:
        >>> with atomic_dir(tmp_path / "d") as stage:
        ...     _ = (stage / "x.txt").write_text("1")
        >>> sorted(p.name for p in (tmp_path / "d").iterdir())
        ['x.txt']
    """
    path = Path(path)
    if path.is_symlink() and path.is_dir():
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path)
    stage = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), dir=path.parent))
    old = None
    try:
        yield stage
        for p in sorted(stage.rglob("*")):
            if p.is_file():
                with open(p, "rb") as fh:
                    os.fsync(fh.fileno())
            elif p.is_dir():
                os.chmod(p, dir_mode())
        os.chmod(stage, dir_mode())
        if path.exists() and any(path.iterdir()):
            if not replace:
                raise FileExistsError(f"'{path}' exists and is not empty")
            if callable(replace):
                replace(path)
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path, "old"), dir=path.parent))
            os.replace(path, old / "dir")
        elif path.exists():
            path.rmdir()  # empty: a rename cannot replace it on every platform
        os.replace(stage, path)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if old is not None and (old / "dir").is_dir() and not os.path.lexists(path):
            os.replace(old / "dir", path)  # the new one did not arrive: the old one back
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def locked_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on directory ``path`` (created if missing) for the block.

    The lock (``fcntl.flock`` on the directory) belongs to this process: it ends with the
    block or with the process, however it dies, so a killed holder never blocks the next
    one. The directory is removed at the end if it is empty. Where the file system cannot
    lock, the block runs unlocked.

    Args:
        path: the directory to lock.

    Returns:
        A context manager giving ``path``.

    Raises:
        BlockingIOError: another process holds the lock.

    Example:
        >>> with locked_dir(tmp_path / "run") as held:
        ...     held.is_dir()
        True
        >>> (tmp_path / "run").exists()
        False
    """
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no locking
        fcntl = None
    path = Path(path)
    while True:
        path.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # removed by its holder meanwhile
            continue
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            now = os.stat(path)
        except BlockingIOError:
            os.close(fd)
            raise BlockingIOError(errno.EWOULDBLOCK, "locked by another process",
                                  str(path)) from None
        except FileNotFoundError:  # removed by its holder meanwhile
            os.close(fd)
            continue
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
                os.close(fd)
                raise
            now = os.stat(path)  # a file system that cannot lock: unlocked
        held = os.fstat(fd)
        if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)  # locked a directory its holder removed: lock the new one
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.rmdir()  # only when empty
        os.close(fd)

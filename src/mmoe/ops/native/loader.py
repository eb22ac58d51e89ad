"""Building and loading the native CPU kernels (``kernels.cpp``).

The library is compiled with :func:`torch.utils.cpp_extension.load` the first time
:func:`build` runs on a machine (about 30 s; torch caches it under ``TORCH_EXTENSIONS_DIR``)
and loaded directly afterwards (milliseconds). :func:`build` is called explicitly where work
starts (a :class:`~mmoe.train.Trainer`, a CLI command), never from inside a layer's forward:
until it has run, :func:`ready` is false and every op takes its torch path. Where no compiler
exists, the build fails, or ``MMOE_NATIVE=0`` is set, the torch paths stay in use, with the
same values up to float rounding (tests compare both). Built with OpenMP, the kernels split
rows or column blocks over torch's intra-op threads (never one sum, so results do not depend
on the thread count); a compiler without OpenMP builds them serial.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import shutil
import sys
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("kernels.cpp")
_CFLAGS = ["-O3", "-march=native"]
_state: dict[str, bool] = {}


def _openmp_flags() -> tuple[list[str], list[str]] | None:
    """Compile and link flags for at::parallel_for in the kernels to run on torch's own
    OpenMP runtime (the libgomp torch loaded, whatever its file is called: wheels may carry a
    renamed copy), so that ``torch.set_num_threads`` governs the kernels too and no second
    thread pool competes for the cores. Other packages may load their own copy (scikit-learn
    does): torch's is the one inside its installation, or the only one loaded. ``None`` where
    none qualifies (then the kernels are built serial)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    libs = {Path(line.split()[-1]) for line in maps.splitlines()
            if line.rsplit("/", 1)[-1].startswith("libgomp")}
    root = Path(torch.__file__).resolve().parent  # .../torch; wheels may use ../torch.libs
    own = [p for p in libs
           if root in p.resolve().parents or p.resolve().parent == root.parent / "torch.libs"]
    lib = own[0] if len(own) == 1 else libs.pop() if len(libs) == 1 else None
    if lib is None:
        return None
    return ["-fopenmp"], [f"-L{lib.parent}", f"-l:{lib.name}", f"-Wl,-rpath,{lib.parent}"]


def _build_name(flags: list[str] | None = None) -> str:
    """Extension name keyed on the source, the flags, the CPU and torch's version: the build
    uses -march=native, so a cache shared by machines of different CPUs must not hand one
    machine another's code, and a library found under this name is loaded as it is (a torch
    upgrade, whose headers it was compiled against, gets a new name and a new build)."""
    openmp = _openmp_flags() or ([], [])
    flags = _CFLAGS + openmp[0] + openmp[1] if flags is None else flags
    cpu = platform.machine()
    try:
        cpu += next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith(("flags", "Features")))
    except (OSError, StopIteration):
        pass
    key = hashlib.sha256(_SOURCE.read_bytes() + " ".join(flags + [cpu, torch.__version__])
                         .encode()).hexdigest()[:12]
    return f"mmoe_native_{key}"


def build() -> bool:
    """Load the native kernels, compiling them first if this machine has no build yet (one
    message on stderr while it compiles). Returns whether they are ready; ``False`` when
    ``MMOE_NATIVE=0`` or the build fails (a warning says why, once). Later calls return the
    first call's outcome at once.

    Example:
        >>> build() in (True, False)
        True
    """
    if "ok" not in _state:
        _state["ok"] = _load()
    return _state["ok"]


def ready() -> bool:
    """Whether the kernels are loaded (never builds: see :func:`build`).

    Example:
        >>> ready() == _state.get("ok", False)
        True
    """
    return _state.get("ok", False)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the block on the torch paths, as if the kernels were not built.

    Example:
        >>> with disabled():
        ...     ready()
        False
    """
    saved = _state.get("ok")
    _state["ok"] = False
    try:
        yield
    finally:
        if saved is None:
            _state.pop("ok", None)
        else:
            _state["ok"] = saved


def _load() -> bool:
    if os.environ.get("MMOE_NATIVE", "1") == "0":
        logging.getLogger("mmoe").info("native CPU kernels skipped (MMOE_NATIVE=0): the torch "
                                       "paths run instead")
        return False
    openmp = _openmp_flags()
    for cflags, ldflags in ([openmp] if openmp else []) + [([], [])]:  # parallel, else serial
        try:
            _build(_CFLAGS + cflags, ldflags)
            break
        except Exception as err:  # no compiler, no ninja, a failed build: keep the torch path
            error = err
    else:
        lines = str(error).splitlines() or [""]
        why = next((line.strip() for line in lines if "error:" in line.lower()), lines[-1])
        warnings.warn(f"mmoe: native CPU kernels unavailable ({type(error).__name__}: {why}); "
                      "using the pure-torch path (same results, slower). Set MMOE_NATIVE=0 to "
                      "skip the build.", RuntimeWarning, stacklevel=3)
        return False
    _register_fakes()
    return True


def _build_directory(name: str) -> Path:
    """Where ``torch.utils.cpp_extension`` builds extension ``name`` (its own rule, without
    importing it: that import pulls in setuptools; a test holds the two equal)."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root is None:
        from torch import _appdirs

        version = torch.version
        accelerator = (f"rocm{version.hip.replace('.', '')}" if version.hip is not None else
                       f"cu{version.cuda.replace('.', '')}" if version.cuda is not None else
                       "cpu")
        python = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
        root = os.path.join(os.path.realpath(_appdirs.user_cache_dir(appname="torch_extensions")),
                            f"{python}_{accelerator}")
    return Path(root, name)


def _build(cflags: list[str], ldflags: list[str]) -> None:
    name = _build_name(cflags + ldflags)
    built = _build_directory(name) / f"{name}.so"
    if built.exists():
        # The name keys the source, the flags, the CPU and torch, so a built library is this
        # build: loaded as it is rather than through torch's build step, whose import
        # (setuptools) and up-to-date check cost a noticeable part of a first epoch.
        # A broken file (an interrupted link) is rebuilt below.
        with contextlib.suppress(OSError):
            torch.ops.load_library(str(built))
            return
    else:
        print("mmoe: compiling the native CPU kernels (once per machine, about 30 s)",
              file=sys.stderr, flush=True)
    from torch.utils import cpp_extension

    with _ninja_on_path():
        cpp_extension.load(name, [str(_SOURCE)], extra_cflags=cflags, extra_ldflags=ldflags,
                           is_python_module=False, verbose=False)


@contextlib.contextmanager
def _ninja_on_path():
    """torch runs ``ninja`` from PATH; the ``ninja`` package (a dependency) installs it beside
    this Python, which is not on PATH when the environment is used without activation."""
    path = os.environ.get("PATH", "")
    scripts = sysconfig.get_path("scripts")
    if shutil.which("ninja") is None and scripts:
        os.environ["PATH"] = scripts + os.pathsep + path
    try:
        yield
    finally:
        os.environ["PATH"] = path


def _register_fakes() -> None:
    """Shape-only versions so that torch.compile can trace through the ops."""
    lib = "mmoe_native::"
    torch.library.register_fake(lib + "fold_linear")(
        lambda numeric, codes, offsets, emb, column, weights, biases: [
            *(emb.new_empty(w.shape[0], codes.shape[0], w.shape[2]) for w in weights),
            codes.new_empty(codes.shape[0] + 1, dtype=torch.int32),
            codes.new_empty(codes.shape[1], dtype=torch.int32),
            codes.new_empty(codes.numel(), dtype=torch.int32)])
    torch.library.register_fake(lib + "fold_linear_backward")(
        lambda grads, numeric, start, base, rows, emb, column, weights: (
            torch.empty_like(emb), [torch.empty_like(w) for w in weights],
            [w.new_empty(w.shape[0], w.shape[2]) for w in weights]))
    torch.library.register_fake(lib + "grouped_linear")(
        lambda x, weight, bias: x.new_empty(x.shape[0], x.shape[1], weight.shape[2]))
    torch.library.register_fake(lib + "grouped_linear_backward")(
        lambda grad, x, weight: (x.new_empty(x.shape), torch.empty_like(weight),
                                 weight.new_empty(weight.shape[0], weight.shape[2])))
    torch.library.register_fake(lib + "mix")(
        lambda gates, experts, relu=False: gates.new_empty(gates.shape[0], gates.shape[1],
                                                           experts.shape[2]))
    torch.library.register_fake(lib + "take_rows")(
        lambda columns, index: [c.new_empty(index.shape[0], *c.shape[1:]) for c in columns])
    torch.library.register_fake(lib + "mix_backward")(
        lambda grad, gates, experts, relu=False: (torch.empty_like(gates),
                                                  experts.new_empty(experts.shape)))



"""Native CPU kernels (``kernels.cpp``) for the hot spots of a training step, with
their autograd wrappers. The pure-torch formulas they replace stay with their callers in
:mod:`mmoe.nn`, which use these ops only when :func:`usable` says so.

A package of its own (torch and the standard library only) because building and loading a
C++ extension needs the file system and the environment, which the torch-only ``nn`` layer
does not touch.

The C++ file is compiled on first use with :func:`torch.utils.cpp_extension.load` (about
30 s, once per machine; torch caches the build under ``TORCH_EXTENSIONS_DIR``). Where no
compiler exists, the build fails, or ``MMOE_NATIVE=0`` is set, every caller keeps its
pure-torch path, which gives the same values up to float rounding (tests compare both).
Measured on the census MMoE at 1 thread (interleaved A/B): one training step went from 10.5 to
7.3 ms with the row scatter, the table and the mixing as kernels (1.45x; weights equal to 7e-7
after 540 steps), and 5% further with the whole layer as one op; see
docs/benchmarks/census_throughput.md.

Ops (all CPU, float32/float64):

- ``fold_linear(numeric (B, n) | None, rows (B, C), emb (V, D), weight (n + C·D, N),
  bias (N,) | None, column (V,)) -> (B, N)``: the whole folded first layer of
  :meth:`FeatureEncoder.linear` (the table T[v] = emb[v] @ W_column[v], the lookups' sum, the
  numeric product, the bias) in one call; its backward scatters the output gradient into the
  table's rows in one loop;
- ``mix(gates (G, B, E), experts (E, B, H)) -> (G, B, H)``: the gate mixing of eq. 5.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import sys
import sysconfig
import warnings
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("kernels.cpp")
_CFLAGS = ["-O3", "-march=native", "-fopenmp-simd"]
_state: dict[str, bool] = {}


def _build_name() -> str:
    """Extension name keyed on the source, the flags and the CPU: the build uses
    -march=native, so a cache shared by machines of different CPUs must not hand one machine
    another's code."""
    cpu = platform.machine()
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith(("flags", "Features")))
        cpu += flags
    except (OSError, StopIteration):
        pass
    key = hashlib.sha256(_SOURCE.read_bytes() + " ".join(_CFLAGS + [cpu]).encode()
                         ).hexdigest()[:12]
    return f"mmoe_native_{key}"


def available() -> bool:
    """Whether the native kernels are loaded; builds them on the first call (once per machine).

    ``False`` when ``MMOE_NATIVE=0`` or the build fails (a warning says why once)."""
    if "ok" not in _state:
        _state["ok"] = _load()
    return _state["ok"]


def _load() -> bool:
    if os.environ.get("MMOE_NATIVE", "1") == "0":
        return False
    try:
        from torch.utils import cpp_extension

        name = _build_name()
        built = Path(cpp_extension._get_build_directory(name, verbose=False), f"{name}.so")
        if not built.exists():
            print("mmoe: compiling the native CPU kernels (once per machine, about 30 s)",
                  file=sys.stderr, flush=True)
        with _ninja_on_path():
            cpp_extension.load(name, [str(_SOURCE)], extra_cflags=_CFLAGS,
                               is_python_module=False, verbose=False)
    except Exception as err:  # no compiler, no ninja, a failed build: keep the torch path
        lines = str(err).splitlines() or [""]
        why = next((line.strip() for line in lines if "error:" in line.lower()), lines[-1])
        warnings.warn(f"mmoe: native CPU kernels unavailable ({type(err).__name__}: {why}); "
                      "using the pure-torch path (same results, slower). Set MMOE_NATIVE=0 to "
                      "skip the build.", RuntimeWarning, stacklevel=3)
        return False
    _register_fakes()
    return True


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
        lambda numeric, rows, emb, weight, bias, column: emb.new_empty(rows.shape[0],
                                                                       weight.shape[1]))
    torch.library.register_fake(lib + "fold_linear_backward")(
        lambda grad, numeric, rows, emb, weight, column: (
            torch.empty_like(emb), torch.empty_like(weight), weight.new_empty(weight.shape[1])))
    torch.library.register_fake(lib + "mix")(
        lambda gates, experts: gates.new_empty(gates.shape[0], gates.shape[1],
                                               experts.shape[2]))
    torch.library.register_fake(lib + "mix_backward")(
        lambda grad, gates, experts: (torch.empty_like(gates),
                                      experts.new_empty(experts.shape)))


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the native ops apply to these tensors: CPU float32/float64, no functorch
    transform (vmap/grad: the pure ops carry the batching rules), not being traced for export,
    and the kernels built."""
    if not all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)
               for t in tensors):
        return False
    if torch.compiler.is_compiling():  # torch.compile traces the ops (fakes registered)
        return _state.get("ok", False)
    return (not torch.jit.is_tracing() and not torch._C._are_functorch_transforms_active()
            and available())


def _ops():
    return torch.ops.mmoe_native


class FoldLinear(torch.autograd.Function):
    """x @ weight + bias with x = [numeric, emb[rows[:, 0]], ..., emb[rows[:, C-1]]] never
    materialised: (B, n) | None, (B, C), (V, D), (n + C·D, N), (N,) | None, (V,) -> (B, N)."""

    @staticmethod
    def forward(ctx, numeric, rows, emb, weight, bias, column):
        ctx.save_for_backward(numeric, rows, emb, weight, column)
        ctx.has_bias = bias is not None
        return _ops().fold_linear(numeric, rows, emb, weight, bias, column)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        numeric, rows, emb, weight, column = ctx.saved_tensors
        d_emb, d_weight, d_bias = _ops().fold_linear_backward(grad, numeric, rows, emb, weight,
                                                              column)
        return None, None, d_emb, d_weight, d_bias if ctx.has_bias else None, None


class Mix(torch.autograd.Function):
    """out[g, b] = sum_e gates[g, b, e] * experts[e, b]: (G, B, E), (E, B, H) -> (G, B, H)."""

    @staticmethod
    def forward(ctx, gates: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gates, experts)
        return _ops().mix(gates, experts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gates, experts = ctx.saved_tensors
        return _ops().mix_backward(grad, gates, experts)

"""Native CPU kernels (``kernels.cpp``) for the hot spots of a training step, with
their autograd wrappers. The pure-torch formulas they replace stay with their callers in
:mod:`mmoe.nn` (and :meth:`TensorTable.take`), which use these ops only when :func:`usable`
(or :func:`take_rows`) says so.

A package of its own (torch and the standard library only) because building and loading a
C++ extension needs the file system and the environment, which the torch-only ``nn`` layer
does not touch.

The C++ file is compiled on first use with :func:`torch.utils.cpp_extension.load` (about
30 s, once per machine; torch caches the build under ``TORCH_EXTENSIONS_DIR``). Where no
compiler exists, the build fails, or ``MMOE_NATIVE=0`` is set, every caller keeps its
pure-torch path, which gives the same values up to float rounding (tests compare both).
Built with OpenMP, the kernels split rows or column blocks over torch's intra-op threads
(never one sum, so results do not depend on the thread count); a compiler without OpenMP
builds them serial. Measured on the census MMoE at 1 thread (interleaved A/B in one process,
11 rounds): one training step is about 2.5x faster than on the pure-torch path (median; the
rounds ranged 2.0-2.8x on a noisy host); see docs/benchmarks/census_throughput.md.

Ops (all CPU, float32/float64):

- ``fold_linear(numeric (B, n) | None, codes (B, C), offsets (C,), emb (V, D), column (V,),
  weights [(G_l, n + C·D, O_l)], biases [(G_l, O_l) | None]) -> [(G_l, B, O_l)] + [start
  (B + 1,), base (C,), rows (B·C,)]`` (the last three int32, read by the backward):
  the folded first layer of several stacked layers that read the encoder's output (the
  experts' first layer and the gates: :meth:`FeatureEncoder.grouped_linear`), i.e. for each
  group the table T[v] = emb[v] @ W_column[v] (V, O), the lookups' sum, the numeric product
  and the bias, written straight into each layer's (G, B, O) output; its backward scatters
  the outputs' gradients into the tables' rows in one loop. Lookups are taken relative to each
  column's most frequent code (among the batch's first 128 rows: its base row, summed once
  for all rows), so only the others are gathered and scattered: a third of census's lookups;
- ``grouped_linear(x (G, B, I), weight (G, I, O), bias (G, O) | None) -> (G, B, O)``: G small
  independent layers (towers, deeper expert layers: :class:`StackedLinear` on a stacked
  input), where MKL's batched GEMM is slow for thin matrices;
- ``mix(gates (G, B, E), experts (E, B, H), relu) -> (G, B, H)``: the gate mixing of eq. 5,
  optionally of the experts' ReLU applied as they are read (one-layer experts: their
  activation is never materialised, and the backward masks the gradient in the same pass);
- ``take_rows(columns [(N, ...)], index (n,)) -> [(n, ...)]``: a batch's rows of every column
  of a table (:meth:`TensorTable.take`), prefetching rows ahead.
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


def available() -> bool:
    """Whether the native kernels are loaded; builds them on the first call (once per machine).

    ``False`` when ``MMOE_NATIVE=0`` or the build fails (a warning says why once)."""
    if "ok" not in _state:
        _state["ok"] = _load()
    return _state["ok"]


def _load() -> bool:
    if os.environ.get("MMOE_NATIVE", "1") == "0":
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
    importing it: that import pulls in setuptools, 0.3 s; a test holds the two equal)."""
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
        # build: loaded as it is (milliseconds) rather than through torch's build step, whose
        # import and up-to-date check took 0.3-0.4 s of every process's first training epoch.
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


_FLOATS = (torch.float32, torch.float64)


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the native ops apply to these tensors: CPU float32/float64, no functorch
    transform (vmap/grad: the pure ops carry the batching rules), not being traced for export,
    and the kernels built."""
    for t in tensors:  # a loop, not all(genexpr): called several times per training step
        if not t.is_cpu or t.dtype not in _FLOATS:
            return False
    return _may_run()


def _may_run() -> bool:
    """Whether a native op may run here, whatever its tensors: no functorch transform, no
    export tracing, and the kernels built (under torch.compile: built, the fakes trace them)."""
    if torch.compiler.is_compiling():
        return _state.get("ok", False)
    return (not torch.jit.is_tracing() and not torch._C._are_functorch_transforms_active()
            and available())


def _ops():
    return torch.ops.mmoe_native


def take_rows(columns: list[torch.Tensor], index: torch.Tensor) -> list[torch.Tensor] | None:
    """``[c.index_select(0, index) for c in columns]`` in one native pass that prefetches rows
    ahead (a batch's rows of a large table), or ``None`` where the native op does not apply
    (not CPU, an index neither int64 nor int32, a gradient to track, a functorch transform,
    no kernels).

    Example:
        >>> take_rows([torch.arange(6).view(3, 2)], torch.tensor([2, 0]))[0].tolist()
        [[4, 5], [0, 1]]
    """
    if (not index.is_cpu or index.dtype not in (torch.int64, torch.int32)
            or any(not c.is_cpu or c.requires_grad for c in columns) or not _may_run()):
        return None
    return _ops().take_rows(columns, index)


class FoldLinear(torch.autograd.Function):
    """The folded first layer of L stacked layers that read the same encoded input
    x = [numeric, emb[codes[:, 0] + offsets[0]], ..., emb[codes[:, C-1] + offsets[C-1]]]
    (never materialised): ``out_l[g] = x @ weights[l][g] + biases[l][g]``.

    ``apply(numeric (B, n) | None, codes (B, C), offsets (C,), emb (V, D), column (V,), L,
    *weights (G_l, n + C·D, O_l), *biases (G_l, O_l) | None) -> L outputs (G_l, B, O_l)``.
    """

    @staticmethod
    def forward(ctx, numeric, codes, offsets, emb, column, num_layers, *params):
        weights, biases = list(params[:num_layers]), list(params[num_layers:])
        *outs, start, base, rows = _ops().fold_linear(numeric, codes, offsets, emb, column,
                                                      weights, biases)
        ctx.save_for_backward(numeric, start, base, rows, emb, column, *weights)
        ctx.has_bias = [b is not None for b in biases]
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        numeric, start, base, rows, emb, column, *weights = ctx.saved_tensors
        d_emb, d_weights, d_biases = _ops().fold_linear_backward(
            list(grads), numeric, start, base, rows, emb, column, weights)
        d_biases = [d if has else None for d, has in zip(d_biases, ctx.has_bias, strict=True)]
        return None, None, None, d_emb, None, None, *d_weights, *d_biases


class GroupedLinear(torch.autograd.Function):
    """out[g] = x[g] @ weight[g] + bias[g]: (G, B, I), (G, I, O), (G, O) | None -> (G, B, O)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _ops().grouped_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        d_x, d_weight, d_bias = _ops().grouped_linear_backward(grad, x, weight)
        return d_x, d_weight, d_bias if ctx.has_bias else None


class Mix(torch.autograd.Function):
    """out[g, b] = sum_e gates[g, b, e] * f(experts[e, b]), f = ReLU if ``relu`` else the
    identity: (G, B, E), (E, B, H), bool -> (G, B, H)."""

    @staticmethod
    def forward(ctx, gates: torch.Tensor, experts: torch.Tensor, relu: bool = False
                ) -> torch.Tensor:
        ctx.save_for_backward(gates, experts)
        ctx.relu = relu
        return _ops().mix(gates, experts, relu)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gates, experts = ctx.saved_tensors
        return *_ops().mix_backward(grad, gates, experts, ctx.relu), None

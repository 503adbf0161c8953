"""Compile edgec's CUDA kernels (``kernels/*.cu``, shipped as ``edgec/kernels/cuda/``) and load them through pycuda.

Two paths:

* **GPU-free** (CI): :func:`compile_cubin` runs ``nvcc -cubin -arch=sm_XX -Xptxas -v`` and parses
  ptxas's resource report (registers, spill stores/loads, stack, shared memory per kernel);
  :func:`check_all` does it for every kernel file and target arch. Needs only ``nvcc``.
* **GPU**: :func:`get_function` compiles with ``pycuda.compiler.compile`` for the device's arch,
  keeps the cubin in an on-disk cache keyed by (source sha256 incl. local headers, arch, nvcc
  version, options) under ``$EDGEC_KERNEL_CACHE`` (default ``~/.cache/edgec/kernels``), loads it
  with ``module_from_buffer`` in torch's context (``pycuda.autoprimaryctx``: the device's primary
  context, the one torch uses) and returns the ``pycuda.driver.Function``.

Threads: pycuda launches in the calling thread's current CUDA context; :func:`get_function` makes
device 0's primary context current in threads where none is.

Launch path (:func:`prepared_function`, :func:`shared_stream`): each entry point is looked up and
``Function.prepare``-d once; launches go through ``prepared_async_call`` with raw int pointers on
one non-blocking pycuda ``Stream`` per process that torch also sees as
``torch.cuda.ExternalStream(stream.handle)``. Torch work run under that stream (``with
torch.cuda.stream(shared_stream()[1])``, what :func:`edgec.kernels.ops.kernel_stream` does) is
ordered with the kernels with no extra synchronization, and can be captured in a CUDA graph;
:mod:`edgec.kernels.ops` joins the streams with events when another torch stream is current.
(pycuda's ``Function`` exposes no raw ``CUfunction`` handle, so launching on torch's own stream
would mean a second driver binding; sharing one stream keeps pycuda the only one.)

Importing this module imports neither pycuda nor torch.

Example:
    >>> rows = check_all(archs=("sm_87",))
    >>> rows[0]["kernel"], rows[0]["registers"], rows[0]["ok"]
    ('int8_gemm_dp4a', 40, True)
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from edgec.atomic import atomic_write_bytes
from edgec.errors import EdgecError, MissingDependencyError

KERNEL_FILES = ("sparse_conv2d_csr", "lowbit_batched_gemv", "lowbit_mma_gemm", "int8_gemm_dp4a", "int8_gemv_mmvq")
DEFAULT_ARCHS = ("sm_87", "sm_86", "sm_90")
# -lineinfo costs nothing at run time and lets compute-sanitizer / Nsight point at source lines
NVCC_OPTIONS = ("-O3", "-lineinfo")


class KernelError(EdgecError):
    """A kernel could not be found, compiled or launched with the given inputs."""


def kernel_dir() -> Path:
    """Folder of the ``.cu`` sources.

    In order: ``$EDGEC_KERNEL_SRC``; ``edgec/kernels/cuda/`` beside this file (a wheel install:
    pyproject maps the top-level ``kernels/`` folder there as package data); the checkout's
    top-level ``kernels/`` (a source tree or an editable install).
    """
    env = os.environ.get("EDGEC_KERNEL_SRC")
    here = Path(__file__).resolve().parent
    candidates = [Path(env)] if env else [here / "cuda", here.parents[1] / "kernels"]
    for folder in candidates:
        if (folder / "cuda_cpu_emu.h").is_file():
            return folder
    raise KernelError(f"edgec's CUDA kernel sources are not at {' or '.join(map(str, candidates))}",
                      hint="reinstall edgec (its wheel ships them as edgec/kernels/cuda/), or set EDGEC_KERNEL_SRC "
                           "to a folder holding the .cu files")


def kernel_source(name: str) -> Path:
    """Path of ``<kernel_dir()>/<name>.cu``."""
    if name not in KERNEL_FILES:
        raise KernelError(f"unknown kernel file {name!r}", hint=f"choose one of {', '.join(KERNEL_FILES)}")
    return kernel_dir() / f"{name}.cu"


def source_digest(src_path: Path) -> str:
    """sha256 of a .cu file and the local headers (``*.cuh``) beside it, which it may include."""
    h = hashlib.sha256(src_path.read_bytes())
    for header in sorted(src_path.parent.glob("*.cuh")):
        h.update(header.name.encode() + b"\0" + header.read_bytes())
    return h.hexdigest()


def _nvcc() -> str:
    nvcc = shutil.which("nvcc") or (str(Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc")
                                    if os.environ.get("CUDA_HOME") else None)
    if not nvcc or not Path(nvcc).exists():
        raise KernelError("nvcc (the CUDA compiler) was not found",
                          hint="install the CUDA toolkit (JetPack has it under /usr/local/cuda/bin) and put it on PATH")
    return nvcc


@functools.lru_cache(maxsize=None)
def nvcc_version() -> str:
    """``nvcc --version``'s release line, e.g. ``Cuda compilation tools, release 13.0, V13.0.88``."""
    out = subprocess.run([_nvcc(), "--version"], capture_output=True, text=True, check=False).stdout
    lines = [ln for ln in out.splitlines() if "release" in ln]
    return lines[-1].strip() if lines else out.strip()


def _check_arch(arch: str) -> None:
    if not re.fullmatch(r"sm_\d{2,3}[af]?", arch):
        raise KernelError(f"bad CUDA arch {arch!r}", hint="write it like sm_87 (Jetson Orin), sm_86 or sm_90")


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas_report(text: str) -> dict[str, dict[str, int]]:
    """Per entry function: registers, spill_stores, spill_loads, stack, smem (bytes), from ``ptxas -v``.

    Example:
        >>> parse_ptxas_report(stderr)["int8_gemm_dp4a"]["smem"]
        4352
    """
    report: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for line in text.splitlines():
        if m := _ENTRY.search(line):
            current = report.setdefault(m.group(1), {"registers": 0, "spill_stores": 0, "spill_loads": 0,
                                                     "stack": 0, "smem": 0})
        elif current is not None and (m := _FRAME.search(line)):
            current.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        elif current is not None and (m := _USED.search(line)):
            current["registers"] = int(m.group(1))
            if s := _SMEM.search(line):
                current["smem"] = int(s.group(1))
    return report


def compile_cubin(src_path: str | os.PathLike[str], arch: str,
                  options: tuple[str, ...] = NVCC_OPTIONS) -> tuple[bytes, dict[str, dict[str, int]]]:
    """Compile one ``.cu`` to a cubin with nvcc directly (no GPU or driver needed).

    Returns ``(cubin_bytes, report)``, ``report`` as :func:`parse_ptxas_report`.

    Example:
        >>> cubin, report = compile_cubin(kernel_source("lowbit_batched_gemv"), "sm_87")
        >>> report["lbgemv_f16_w4_m1"]["spill_stores"]
        0
    """
    _check_arch(arch)
    src = Path(src_path)
    with tempfile.TemporaryDirectory(prefix="edgec-nvcc-") as tmp:
        out = Path(tmp) / (src.stem + ".cubin")
        cmd = [_nvcc(), "-cubin", f"-arch={arch}", "-Xptxas", "-v", *options, "-I", str(src.parent),
               "-o", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.is_file():
            raise KernelError(f"nvcc failed on {src.name} for {arch}:\n{proc.stderr.strip()}",
                              hint="this is a bug in the kernel source or an nvcc too old for the arch")
        return out.read_bytes(), parse_ptxas_report(proc.stdout + proc.stderr)


@functools.lru_cache(maxsize=None)
def _cached_report(src: str, digest: str, arch: str) -> dict[str, dict[str, int]]:
    return compile_cubin(src, arch)[1]  # digest is part of the key so edits recompile


def check_all(archs: tuple[str, ...] = DEFAULT_ARCHS, kernels: tuple[str, ...] = KERNEL_FILES) -> list[dict[str, Any]]:
    """Compile every kernel file for every arch; one row per (entry function, arch).

    Row keys: kernel, file, arch, registers, spill_stores, spill_loads, spills (bytes, both ways),
    stack, smem, ok (compiled with no local-memory spills).

    Example:
        >>> [r for r in check_all() if not r["ok"]]
        []
    """
    rows = []
    for name in kernels:
        src = kernel_source(name)
        for arch in archs:
            report = _cached_report(str(src), source_digest(src), arch)
            for entry, res in sorted(report.items()):
                spills = res["spill_stores"] + res["spill_loads"]
                rows.append({"kernel": entry, "file": src.name, "arch": arch, **res, "spills": spills,
                             "ok": spills == 0})
    return rows


# --------------------------------------------------------------------------- GPU path (pycuda)
def cache_dir() -> Path:
    """On-disk cubin cache: ``$EDGEC_KERNEL_CACHE`` or ``~/.cache/edgec/kernels``."""
    env = os.environ.get("EDGEC_KERNEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgec" / "kernels"


def cache_key(src_path: Path, arch: str, options: tuple[str, ...] = NVCC_OPTIONS) -> str:
    """Hex key over (source + headers sha256, arch, nvcc version, options)."""
    h = hashlib.sha256()
    for part in (source_digest(src_path), arch, nvcc_version(), *options):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def _pycuda() -> Any:
    """``pycuda.driver`` with torch's (primary) context current; clear errors when unavailable."""
    try:
        import pycuda.driver as drv
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "pycuda":
            raise MissingDependencyError("pycuda", "gpu", "running edgec's CUDA kernels") from exc
        raise KernelError(f"pycuda cannot be imported: {exc}", hint="reinstall it: pip install 'edgec[gpu]'") from exc
    except ImportError as exc:  # e.g. libcuda.so.1 missing: pycuda's extension cannot load
        raise KernelError(f"pycuda is installed but cannot load the CUDA driver: {exc}",
                          hint="run on a machine with an NVIDIA driver (libcuda.so.1)") from exc
    import pycuda.autoprimaryctx  # noqa: F401  (retains + pushes device 0's primary context, as torch uses)
    return drv


def cubin_for(name: str, arch: str) -> bytes:
    """The cubin of ``<name>.cu`` for ``arch``, from the cache or compiled (and cached)."""
    _check_arch(arch)
    src = kernel_source(name)
    path = cache_dir() / f"{name}-{arch}-{cache_key(src, arch)[:24]}.cubin"
    if path.is_file():
        return path.read_bytes()
    try:
        from pycuda.compiler import compile as pycuda_compile
    except ImportError:  # no pycuda: nvcc directly gives the same cubin
        cubin = compile_cubin(src, arch)[0]
    else:
        cubin = pycuda_compile(src.read_text(), options=list(NVCC_OPTIONS), no_extern_c=True, arch=arch,
                               cache_dir=False, include_dirs=[str(src.parent)], target="cubin")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, cubin)  # a crash never leaves a half cubin under the final name
    return cubin


def device_arch(device_index: int = 0) -> str:
    """``sm_XY`` of a CUDA device, as torch reports it."""
    import torch

    major, minor = torch.cuda.get_device_capability(device_index)
    return f"sm_{major}{minor}"


@functools.lru_cache(maxsize=None)
def _module(name: str, arch: str) -> Any:
    drv = _pycuda()
    return drv.module_from_buffer(cubin_for(name, arch))


def get_function(name: str, entry: str, arch: str | None = None) -> Any:
    """The ``pycuda.driver.Function`` ``entry`` of ``<name>.cu`` (compiled for the device).

    Example:
        >>> f = get_function("sparse_conv2d_csr", "sparse_conv2d_csr_f32")
        >>> f(x, row_ptr, col_idx, values, np.uintp(0), y, np.int32(c), ..., block=(128, 1, 1), grid=grid)
    """
    _ensure_current_context()
    return _function(name, entry, arch or device_arch())


def _ensure_current_context() -> None:
    """Make the primary context autoprimaryctx retained (torch's) current in this thread if none is.

    autoprimaryctx pushes it in the importing thread only; a launch from another thread (a
    server worker, a data-loader thread) would otherwise find no current context.
    """
    drv = _pycuda()
    if drv.Context.get_current() is None:  # pycuda's per-thread context stack is empty here
        import pycuda.autoprimaryctx as primary

        primary.context.push()


@functools.lru_cache(maxsize=None)
def prepared_function(name: str, entry: str, arg_format: str) -> Any:
    """``get_function(name, entry)`` with ``Function.prepare(arg_format)`` done once (cached).

    ``arg_format`` is a struct format, one letter per kernel argument: ``P`` pointer (pass an
    int), ``i`` int32, ``f`` float32. Launch with ``fn.prepared_async_call(grid, block, stream, *args)``.

    Example:
        >>> fn = prepared_function("lowbit_batched_gemv", "lbgemv_f16_w4_m1", "PPPPPiiii")
    """
    fn = get_function(name, entry)
    fn.prepare(arg_format)
    return fn


@functools.lru_cache(maxsize=1)
def shared_stream() -> tuple[Any, Any]:
    """``(pycuda Stream, torch.cuda.ExternalStream)`` over one non-blocking CUDA stream, made once.

    The kernels launch on it; torch runs on it under ``torch.cuda.stream(shared_stream()[1])``.
    """
    import torch

    drv = _pycuda()
    _ensure_current_context()
    stream = drv.Stream(flags=1)  # CU_STREAM_NON_BLOCKING: no implicit sync with the legacy NULL stream
    return stream, torch.cuda.ExternalStream(stream.handle, device=torch.device("cuda", 0))


@functools.lru_cache(maxsize=None)
def _function(name: str, entry: str, arch: str) -> Any:
    try:
        return _module(name, arch).get_function(entry)
    except Exception as exc:  # pycuda.driver.LogicError: named symbol not found
        raise KernelError(f"{name}.cu has no entry point {entry!r} for {arch}: {exc}",
                          hint="this is a bug in edgec (entry names are fixed in ops.py)") from exc

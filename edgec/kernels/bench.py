"""Benchmark edgec's CUDA kernels against torch's dense ops (cuDNN / cuBLAS) on this GPU.

Cases (issue 6): sparse conv (CSR) on 3x3 layers at 50..95% sparsity vs dense ``F.conv2d``;
low-bit weight-only linear at 8/4/2/1 bits vs ``F.linear`` in FP16 and FP32 for 4096x4096 and
11008x4096 at batch 1, 4 and 16, with the achieved memory bandwidth against the device's measured
copy bandwidth; W8A8 ``__dp4a`` linear vs ``F.linear``. ``quick=True`` keeps one shape per op.

Timing is device time from CUDA events on the default stream (where pycuda launches), after a
warm-up: median, p90, min and CV over ``iters`` runs. Each kernel's output is compared with torch's
(``max_abs_err``), so a fast wrong kernel cannot hide in the table.

Needs a CUDA GPU, pycuda and nvcc: :func:`require_gpu` says which is missing, cheaply, before any
work. ``edgec kernels bench`` and ``benchmarks/kernels.py`` both call this module.

Example:
    >>> require_gpu()                                   # EdgecError (exit 2) without a GPU
    >>> doc = run(quick=True, iters=50)                 # doctest: +SKIP
    >>> print(format_table(doc))                        # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import EdgecError

__all__ = ["SCHEMA", "copy_bandwidth_gbps", "default_output", "format_table", "gpu_missing",
           "require_gpu", "run"]

SCHEMA = "edgec.kernels.bench/1"
Progress = Callable[[str], None]


def gpu_missing() -> str | None:
    """Every reason the kernels cannot run here ("; "-joined), or None when they can. Cheap: it
    imports torch, but initialises nothing beyond ``torch.cuda.is_available()``."""
    import shutil

    reasons = []
    try:
        import torch

        if not torch.cuda.is_available():
            reasons.append("no CUDA GPU here (torch.cuda.is_available() is False)")
    except ImportError:
        reasons.append("torch is not installed")
    if importlib.util.find_spec("pycuda") is None:
        reasons.append("pycuda is not installed (pip install 'edgec[gpu]')")
    elif not reasons:
        try:
            import pycuda.driver  # noqa: F401  (loads libcuda.so.1)
        except ImportError as exc:
            reasons.append(f"pycuda cannot load the CUDA driver ({exc})")
    if shutil.which("nvcc") is None:
        reasons.append("nvcc is not on PATH (export PATH=/usr/local/cuda/bin:$PATH)")
    return "; ".join(reasons) or None


def require_gpu() -> None:
    """Raise :class:`EdgecError` (exit 2) saying what is missing, when the kernels cannot run here."""
    reason = gpu_missing()
    if reason:
        raise EdgecError(f"benchmarking edgec's CUDA kernels needs a CUDA GPU, pycuda and nvcc: {reason}",
                         hint="run it on a GPU machine or a Jetson with pip install 'edgec[gpu]'; "
                              "`edgec kernels check` compiles them without a GPU; `edgec doctor` lists what is missing")


def _time(fn: Callable[[], Any], iters: int, warmup: int) -> dict[str, float]:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1000.0)  # ms -> us
    a = np.asarray(samples)
    return {"median_us": float(np.median(a)), "p90_us": float(np.percentile(a, 90)), "min_us": float(a.min()),
            "cv": float(a.std() / a.mean())}


def _row(op: str, case: dict, kernel: dict, baselines: dict[str, dict], err: float) -> dict:
    row = {"op": op, **case, "kernel": kernel, "baselines": baselines, "max_abs_err": err}
    row["speedup"] = {name: b["median_us"] / kernel["median_us"] for name, b in baselines.items()}
    return row


def copy_bandwidth_gbps(mib: int = 256, iters: int = 20) -> float:
    """Measured device-to-device copy bandwidth, GB/s (bytes read + written per second).

    The realistic ceiling for a memory-bound kernel such as the batch-1 low-bit GEMV.
    """
    import torch

    src = torch.empty(mib * 2**20, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    t = _time(lambda: dst.copy_(src), iters, warmup=3)
    return 2 * src.numel() / (t["median_us"] * 1e-6) / 1e9


def bench_sparse_conv(quick: bool, iters: int, warmup: int) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from edgec.kernels import ops
    from edgec.kernels.packing import pack_csr_conv2d

    rows = []
    shapes = [(1, 64, 56, 56, 64)] if quick else [(1, 64, 56, 56, 64), (8, 64, 56, 56, 64), (1, 256, 14, 14, 256)]
    for n, c, h, w, cout in shapes:
        for sparsity in ((0.7, 0.9) if quick else (0.5, 0.7, 0.8, 0.9, 0.95)):
            weight = torch.randn(cout, c, 3, 3, device="cuda")
            weight[torch.rand_like(weight) < sparsity] = 0
            packed = pack_csr_conv2d(weight)
            dev = {f: torch.as_tensor(np.asarray(getattr(packed, f))).cuda() for f in ("row_ptr", "col_idx", "values")}
            packed_dev = type(packed)(dev["row_ptr"], dev["col_idx"], dev["values"], packed.shape)
            for dtype in (torch.float32, torch.float16):
                x = torch.randn(n, c, h, w, device="cuda", dtype=dtype)
                wd = weight.to(dtype)
                y = ops.sparse_conv2d(x, packed_dev, padding=1)
                err = float((y.float() - F.conv2d(x, wd, padding=1).float()).abs().max())
                case = {"shape": [n, c, h, w, cout, 3, 3], "sparsity": sparsity, "dtype": str(dtype).split(".")[-1]}
                rows.append(_row("sparse_conv2d_csr", case,
                                 _time(lambda: ops.sparse_conv2d(x, packed_dev, padding=1), iters, warmup),
                                 {"cudnn_dense": _time(lambda: F.conv2d(x, wd, padding=1), iters, warmup)}, err))
    return rows


def _bytes(*tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def bench_lowbit(quick: bool, iters: int, warmup: int, copy_gbps: float | None = None) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from edgec.kernels import ops
    from edgec.kernels.packing import LowBitWeight, dequantize_lowbit, pack_lowbit

    rows = []
    shapes = [(4096, 4096)] if quick else [(4096, 4096), (11008, 4096), (4096, 11008)]
    for n, k in shapes:
        w = torch.randn(n, k)
        for bits in (8, 4, 2, 1):
            p = pack_lowbit(w, bits)
            pd = LowBitWeight(torch.as_tensor(p.words.view(np.int32)).cuda(), torch.as_tensor(p.scales).cuda(),
                              bits, k)
            w32 = torch.from_numpy(dequantize_lowbit(p)).cuda()  # exactly the weights the kernel uses
            w16 = w32.half()
            for m in ((1,) if quick else (1, 4, 16)):
                for dtype, wref in ((torch.float16, w16), (torch.float32, w32)):
                    x = torch.randn(m, k, device="cuda", dtype=dtype)
                    y = ops.lowbit_linear(x, pd)
                    err = float((y.float() - F.linear(x.float(), w32)).abs().max())
                    case = {"shape": [m, n, k], "bits": bits, "dtype": str(dtype).split(".")[-1]}
                    row = _row("lowbit_linear", case, _time(lambda: ops.lowbit_linear(x, pd), iters, warmup),
                               {f"cublas_{case['dtype']}": _time(lambda: F.linear(x, wref), iters, warmup)}, err)
                    # bytes the kernel must move at least: packed weights + scales + x + y
                    row["achieved_gbps"] = _bytes(pd.words, pd.scales, x, y) / (row["kernel"]["median_us"] * 1e-6) / 1e9
                    if copy_gbps:
                        row["fraction_of_copy_bandwidth"] = row["achieved_gbps"] / copy_gbps
                    rows.append(row)
    return rows


def bench_int8(quick: bool, iters: int, warmup: int) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from edgec.kernels import ops
    from edgec.kernels.packing import Int8Weight, dequantize_int8, quantize_int8_weight

    rows = []
    n = k = 4096
    p = quantize_int8_weight(torch.randn(n, k))
    pd = Int8Weight(torch.as_tensor(p.q).cuda(), torch.as_tensor(p.scales).cuda(), k)
    w32 = torch.from_numpy(dequantize_int8(p)).cuda()
    w16 = w32.half()
    for m in ((1, 64) if quick else (1, 16, 64, 256)):
        x = torch.randn(m, k, device="cuda")
        s = float(x.abs().max()) / 127
        err = float((ops.int8_linear(x, pd, s) - F.linear(x, w32)).abs().max())
        x16 = x.half()
        rows.append(_row("int8_linear_dp4a", {"shape": [m, n, k], "dtype": "int8"},
                         _time(lambda: ops.int8_linear(x, pd, s), iters, warmup),
                         {"cublas_float32": _time(lambda: F.linear(x, w32), iters, warmup),
                          "cublas_float16": _time(lambda: F.linear(x16, w16), iters, warmup)}, err))
    return rows


def machine() -> dict[str, Any]:
    """GPU, arch, versions (torch, CUDA, nvcc, pycuda, driver) and edgec's full machine description."""
    import torch

    from edgec.bench.machine import describe_machine
    from edgec.kernels.loader import device_arch, nvcc_version

    props = torch.cuda.get_device_properties(0)
    info = {"gpu": props.name, "arch": device_arch(), "memory_gib": round(props.total_memory / 2**30, 1),
            "sm_count": props.multi_processor_count, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "nvcc": nvcc_version(), "python": platform.python_version(), "host": platform.node()}
    try:
        import pycuda
        import pycuda.driver as drv

        info["pycuda"] = pycuda.VERSION_TEXT
        info["cuda_driver"] = drv.get_driver_version()
    except Exception:  # noqa: BLE001 - descriptive only
        pass
    info["description"] = describe_machine("cuda:0")
    return info


def run(quick: bool = False, iters: int = 100, warmup: int = 20, progress: Progress | None = None) -> dict[str, Any]:
    """Run every case on GPU 0; returns the results document (schema ``edgec.kernels.bench/1``).

    Raises :class:`EdgecError` first (see :func:`require_gpu`) when the kernels cannot run here.
    """
    if iters < 1 or warmup < 0:
        raise EdgecError(f"iters={iters}, warmup={warmup}: need iters >= 1 and warmup >= 0",
                         hint="e.g. --iters 100 --warmup 20")
    require_gpu()
    import torch

    say = progress or (lambda _msg: None)
    torch.manual_seed(0)
    say("measuring device copy bandwidth")
    copy_gbps = copy_bandwidth_gbps()
    rows: list[dict] = []
    cases = (("sparse conv", lambda: bench_sparse_conv(quick, iters, warmup)),
             ("low-bit linear", lambda: bench_lowbit(quick, iters, warmup, copy_gbps)),
             ("int8 dp4a linear", lambda: bench_int8(quick, iters, warmup)))
    for name, bench in cases:
        say(f"benchmarking {name}")
        rows += bench()
    return {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "timing": "CUDA events, device time, default stream", "iters": iters, "warmup": warmup,
            "quick": quick, "copy_bandwidth_gbps": copy_gbps, "machine": machine(), "results": rows}


def format_table(doc: dict[str, Any]) -> str:
    """The results as a fixed-width text table (one line per case)."""
    lines = [f"GPU: {doc['machine']['gpu']} ({doc['machine']['arch']}); measured copy bandwidth "
             f"{doc['copy_bandwidth_gbps']:.0f} GB/s",
             f"{'op':18} {'case':42} {'kernel us':>10}  {'GB/s':>7}  baselines (us, speedup)   max_abs_err"]
    for r in doc["results"]:
        case = " ".join(f"{k}={v}" for k, v in r.items() if k in ("shape", "sparsity", "bits", "dtype"))
        base = "  ".join(f"{name}={b['median_us']:.1f} ({r['speedup'][name]:.2f}x)"
                         for name, b in r["baselines"].items())
        gbps = f"{r['achieved_gbps']:7.0f}" if "achieved_gbps" in r else " " * 7
        lines.append(f"{r['op']:18} {case:42} {r['kernel']['median_us']:10.1f}  {gbps}  {base}   "
                     f"{r['max_abs_err']:.2e}")
    return "\n".join(lines)


def default_output(doc: dict[str, Any], folder: Path) -> Path:
    """``<folder>/kernels-<GPU name>.json``, the file name benchmarks/results/ uses."""
    return Path(folder) / f"kernels-{doc['machine']['gpu'].replace(' ', '_')}.json"

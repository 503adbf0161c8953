"""Benchmark edgec's CUDA kernels against torch's dense ops (cuDNN / cuBLAS) on this GPU.

    python benchmarks/kernels.py                      # table on stdout + benchmarks/results/kernels-<gpu>.json
    python benchmarks/kernels.py --quick --out k.json

Cases: sparse conv (CSR) at several sparsities vs dense F.conv2d; low-bit weight-only linear at
8/4/2/1 bits vs F.linear in fp16 and fp32 at batch 1 and 8; W8A8 ``__dp4a`` linear vs F.linear.
Timing is device time from CUDA events on the default stream (where pycuda launches), after a
warm-up: median, p90, min over ``--iters`` runs of each op; the kernel's output is also compared
with torch's (``max_abs_err``), so a fast wrong kernel cannot hide in the table.

Needs a CUDA GPU, pycuda and nvcc. Without them it says so and exits 0, writing nothing.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np


def _why_not() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU here (torch.cuda.is_available() is False)"
    try:
        import pycuda.driver  # noqa: F401
    except ImportError as exc:
        return f"pycuda is not usable ({exc}); pip install 'edgec[gpu]'"
    return None


def _time(fn, iters: int, warmup: int) -> dict[str, float]:
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


def bench_lowbit(quick: bool, iters: int, warmup: int) -> list[dict]:
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
            w16 = torch.from_numpy(dequantize_lowbit(p)).cuda().half()
            w32 = w16.float()
            for m in ((1,) if quick else (1, 8)):
                for dtype, wref in ((torch.float16, w16), (torch.float32, w32)):
                    x = torch.randn(m, k, device="cuda", dtype=dtype)
                    err = float((ops.lowbit_linear(x, pd).float() - F.linear(x.float(), w32)).abs().max())
                    case = {"shape": [m, n, k], "bits": bits, "dtype": str(dtype).split(".")[-1]}
                    rows.append(_row("lowbit_linear", case, _time(lambda: ops.lowbit_linear(x, pd), iters, warmup),
                                     {f"cublas_{case['dtype']}": _time(lambda: F.linear(x, wref), iters, warmup)}, err))
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


def machine() -> dict:
    import torch

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
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="results JSON (default benchmarks/results/kernels-<gpu>.json)")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="fewer shapes, for a smoke run")
    args = ap.parse_args(argv)
    reason = _why_not()
    if reason:
        print(f"kernels benchmark skipped: {reason}. No results written.")
        return 0
    import torch

    from edgec.atomic import atomic_write_json

    torch.manual_seed(0)
    rows = []
    for bench in (bench_sparse_conv, bench_lowbit, bench_int8):
        rows += bench(args.quick, args.iters, args.warmup)
    info = machine()
    print(f"{'op':18} {'case':42} {'kernel us':>10}  baselines (us, speedup)   max_abs_err")
    for r in rows:
        case = " ".join(f"{k}={v}" for k, v in r.items() if k in ("shape", "sparsity", "bits", "dtype"))
        base = "  ".join(f"{name}={b['median_us']:.1f} ({r['speedup'][name]:.2f}x)"
                         for name, b in r["baselines"].items())
        print(f"{r['op']:18} {case:42} {r['kernel']['median_us']:10.1f}  {base}   {r['max_abs_err']:.2e}")
    out = args.out or Path(__file__).parent / "results" / f"kernels-{info['gpu'].replace(' ', '_')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, {"schema": "edgec.kernels.bench/1", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "timing": "CUDA events, device time, default stream", "iters": args.iters,
                            "warmup": args.warmup, "machine": info, "results": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark edgec's CUDA kernels against cuBLAS / cuDNN (torch's dense FP16 ops) on this GPU.

Cases (issue 15's table): weight-only low-bit linear W4 / W1 / W8 at batch 1 on 4096x4096 and 11008x4096 and at
batch 16 on 4096x4096 (vs cuBLAS FP16 ``F.linear``); the per-layer generated sparse conv, 3x3 64->64 on 56x56 at
90% sparsity, batch 1 and 8 (vs cuDNN FP16 dense ``F.conv2d``); the W8A8 INT8 linear on 4096x4096 at m = 1..64
(vs cuBLAS FP16). Activations are fp16 everywhere.

How (see :mod:`edgec.kernels.bench_timing`): device time from CUPTI with the L2 flushed before every call, for
edgec and torch alike; end-to-end host time per call beside it; bytes moved against the measured copy
bandwidth; correctness against an FP32 reference on fresh random inputs (``trials`` of them) per case; the
static model's prediction (:mod:`edgec.kernels.perfmodel`) next to each measurement; the goal of each case and
whether it was met. A case that fails records its error and the run goes on.

Needs a CUDA GPU, pycuda and nvcc (:func:`require_gpu` says which is missing, cheaply, before any work).
``edgec kernels bench`` and ``benchmarks/kernels.py`` both call this module.

Example:
    >>> doc = run(quick=True, iters=30)                 # doctest: +SKIP
    >>> print(format_table(doc))                        # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgec.errors import EdgecError
from edgec.kernels import perfmodel
from edgec.kernels.bench_timing import L2Flush, copy_bandwidth_gbps, device_times, host_times

__all__ = ["SCHEMA", "GOALS", "cases", "copy_bandwidth_gbps", "default_output", "format_table", "gpu_missing",
           "require_gpu", "run"]

SCHEMA = "edgec.kernels.bench/2"
Progress = Callable[[str], None]
TOL = 2e-2  # max |y - ref| / max |ref|: fp16 outputs of K=4096 dot products sit near 1e-3; garbage near 1

# (op, bits or None, m) -> speed-up over the dense baseline the issue asks for (device time, L2 flushed)
GOALS: dict[tuple, float] = {
    ("lowbit_linear", 4, 1, 11008): 3.0, ("lowbit_linear", 4, 1, 4096): 2.5, ("lowbit_linear", 1, 1, 11008): 6.0,
    ("lowbit_linear", 4, 16, 4096): 2.0, ("lowbit_linear", 8, 1, 4096): 1.6, ("lowbit_linear", 8, 1, 11008): 1.6,
    **{("int8_linear", None, m, 4096): 1.5 for m in (1, 2, 4, 8, 16)},
    ("sparse_conv2d", None, 1, 64): 1.5,
}


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


def cases(quick: bool = False, only: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The benchmark cases (no GPU needed): op, shape and, for low-bit, bits; ``only`` keeps the ops whose name
    contains one of its words (e.g. ``("int8", "sparse")``)."""
    every = _cases(quick)
    return [c for c in every if not only or any(word in c["op"] for word in only)]


def _cases(quick: bool) -> list[dict[str, Any]]:
    if quick:
        return [{"op": "lowbit_linear", "bits": 4, "shape": [1, 4096, 4096]},
                {"op": "int8_linear", "shape": [1, 4096, 4096]}, {"op": "int8_linear", "shape": [16, 4096, 4096]},
                {"op": "sparse_conv2d", "shape": [1, 64, 56, 56, 64, 3, 3], "sparsity": 0.9}]
    out = []
    for b in (4, 1, 8):  # batch 16 right after batch 1 of the same layer (one packing)
        out += [{"op": "lowbit_linear", "bits": b, "shape": [m, n, 4096]} for n, m in ((11008, 1), (4096, 1), (4096, 16))]
    out += [{"op": "sparse_conv2d", "shape": [n, 64, 56, 56, 64, 3, 3], "sparsity": 0.9} for n in (1, 8)]
    out += [{"op": "int8_linear", "shape": [m, 4096, 4096]} for m in (1, 2, 4, 8, 16, 32, 64)]
    return out


def goal_of(case: dict[str, Any]) -> float | None:
    """The issue's speed-up goal for a case, or None where it sets none."""
    s = case["shape"]
    key = (case["op"], case.get("bits"), s[0], s[1] if case["op"] != "sparse_conv2d" else s[4])
    return GOALS.get(key)


# --------------------------------------------------------------------------- per-op setup
_LOWBIT_LAYERS: dict[tuple[int, int, int], tuple] = {}  # the last low-bit layer, reused by the next case


def _lowbit(case: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from edgec.kernels.modules import LowBitLinear
    from edgec.kernels.packing import dequantize_lowbit, pack_lowbit

    m, n, k = case["shape"]
    key = (case["bits"], n, k)
    if key not in _LOWBIT_LAYERS:  # packing 11008x4096 takes seconds: batch 1 and 16 share a layer
        packed = pack_lowbit((torch.randn(n, k) * 0.02).numpy(), case["bits"])
        w32 = torch.from_numpy(dequantize_lowbit(packed)).cuda()  # exactly the weights the kernel uses
        _LOWBIT_LAYERS.clear()
        _LOWBIT_LAYERS[key] = (packed, w32, w32.half(), LowBitLinear(packed).cuda().eval())
    packed, w32, w16, module = _LOWBIT_LAYERS[key]
    return {"make_x": lambda: torch.randn(m, k, device="cuda", dtype=torch.float16),
            "edgec": module, "baseline": lambda x: F.linear(x, w16), "baseline_name": "cublas_fp16",
            "reference": lambda x: F.linear(x.float(), w32),
            "bytes": int(np.asarray(packed.words).nbytes + 4 * n + 2 * m * k + 2 * m * n)}


def _int8(case: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from edgec.kernels import int8, ops
    from edgec.kernels.packing import dequantize_int8, quantize_int8_weight

    m, n, k = case["shape"]
    packed = quantize_int8_weight((torch.randn(n, k) * 0.02).numpy())
    dw = int8.device_weight(packed, "cuda")
    w16 = torch.from_numpy(dequantize_int8(packed)).cuda().half()
    x_scale = 4.5 / 127  # fixed calibration: N(0, 1) inputs beyond 4.5 sigma clip, as W8A8 would
    inv = float(int8.inverse_scale(x_scale))
    qf = dw.q16[:, :k].float()
    scale = dw.scales * float(np.float32(x_scale))

    def reference(x: torch.Tensor) -> torch.Tensor:  # W8A8 in fp32: the same quantized x, exact int products
        xq = torch.clamp(x.float() * inv, -127, 127).round()
        return (xq.double() @ qf.double().T).float() * scale

    case["path"] = "torch._int_mm (cuBLASLt IMMA)" if int8.use_int_mm(m, n) else int8.mmvq_launch(m, n, True)[0]
    return {"make_x": lambda: torch.randn(m, k, device="cuda", dtype=torch.float16),
            "edgec": lambda x: ops.int8_linear(x, dw, x_scale), "baseline": lambda x: F.linear(x, w16),
            "baseline_name": "cublas_fp16", "reference": reference,
            "bytes": int(dw.q16.numel() + 4 * n + 2 * m * k + 2 * m * n)}


def _sparse(case: dict[str, Any], iters: int, flush: L2Flush, autotune: bool = True) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from edgec.kernels import sparse_codegen as sc

    n, c, h, w, cout, kh, kw = case["shape"]
    gen = torch.Generator().manual_seed(15)  # one layer for both batch sizes: its cubins compile once
    weight = torch.randn(cout, c, kh, kw, generator=gen) * 0.1
    weight[torch.rand(weight.shape, generator=gen) < case["sparsity"]] = 0
    w32, w16 = weight.cuda(), weight.cuda().half()
    torch.backends.cudnn.benchmark = True  # cuDNN gets to pick its fastest algorithm
    tilings = sc.candidate_tilings((h, w), c, cout)  # 3x3 stride 1 'same': output size = input size
    tilings = tilings if autotune else tilings[:1]
    x0 = torch.randn(n, c, h, w, device="cuda", dtype=torch.float16)
    ref0 = F.conv2d(x0.float(), w32, padding=(kh // 2, kw // 2))
    variants, best = [], None
    for t in tilings:  # SparseRT-style autotuning over the channel-group size; only correct variants compete
        kernel = sc.SparseConvKernel(sc.generate(weight, h, w, padding=(kh // 2, kw // 2), half=True, tiling=t))
        rel = float((kernel(x0).float() - ref0).abs().max() / ref0.abs().max())
        dev = device_times({"k": lambda kernel=kernel: kernel(x0)}, flush, max(10, iters // 3))["k"]
        variants.append({"tiling": vars(t), "groups": kernel.gen.groups, "tap_loads": kernel.gen.tap_loads,
                         "median_us": dev.get("median_us"), "max_rel_err": rel})
        if rel <= TOL and (best is None or dev.get("median_us", 1e9) < best[1]):
            best = (kernel, dev.get("median_us", 1e9))
    if best is None:
        raise RuntimeError(f"no generated tiling is correct: {variants}")
    kernel = best[0]
    case.update(nnz=kernel.gen.nnz, tap_loads=kernel.gen.tap_loads, out_hw=list(kernel.gen.out_hw),
                variants=variants, tiling=vars(kernel.gen.tiling))
    pad = (kh // 2, kw // 2)
    return {"make_x": lambda: torch.randn(n, c, h, w, device="cuda", dtype=torch.float16), "edgec": kernel,
            "baseline": lambda x: F.conv2d(x, w16, padding=pad), "baseline_name": "cudnn_fp16",
            "reference": lambda x: F.conv2d(x.float(), w32, padding=pad),
            "bytes": int(2 * (n * c * h * w + n * cout * h * w))}


# --------------------------------------------------------------------------- one case
def _errors(setup: dict[str, Any], trials: int) -> dict[str, Any]:
    worst_abs, worst_rel = 0.0, 0.0
    for _ in range(trials):  # fresh random inputs every time
        x = setup["make_x"]()
        y, ref = setup["edgec"](x).float(), setup["reference"](x).float()
        err = float((y - ref).abs().max())
        worst_abs = max(worst_abs, err)
        worst_rel = max(worst_rel, err / max(float(ref.abs().max()), 1e-30))
    return {"max_abs_err": worst_abs, "max_rel_err": worst_rel, "ok": worst_rel <= TOL, "trials": trials}


def run_case(case: dict[str, Any], iters: int, warmup: int, trials: int, flush: L2Flush, copy_gbps: float,
             autotune: bool = True) -> dict[str, Any]:
    """Measure one case; returns its result row (``error`` set instead when it failed). ``autotune``: try every
    candidate tiling of a generated sparse conv (each is an nvcc compile, ~3 s) instead of the default one."""
    row: dict[str, Any] = dict(case)
    row["goal"] = goal_of(case)
    try:
        if case["op"] == "lowbit_linear":
            setup = _lowbit(row)
        elif case["op"] == "int8_linear":
            setup = _int8(row)
        else:
            setup = _sparse(row, iters, flush, autotune)
        row.update(_errors(setup, trials))
        x = setup["make_x"]()
        fns = {"edgec": lambda: setup["edgec"](x), "baseline": lambda: setup["baseline"](x)}
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        dev = device_times(fns, flush, iters)
        row["edgec"] = {**dev["edgec"], **host_times(fns["edgec"], max(10, iters // 2))}
        row["baseline"] = {"name": setup["baseline_name"], **dev["baseline"],
                           **host_times(fns["baseline"], max(10, iters // 2))}
        e_us, b_us = row["edgec"].get("median_us"), row["baseline"].get("median_us")
        if e_us and b_us:
            row["speedup"] = b_us / e_us
            row["meets_goal"] = None if row["goal"] is None else row["speedup"] >= row["goal"]
            row["bytes"] = setup["bytes"]
            row["achieved_gbps"] = setup["bytes"] / (e_us * 1e-6) / 1e9
            row["fraction_of_copy_bandwidth"] = row["achieved_gbps"] / copy_gbps if copy_gbps else None
    except Exception as exc:  # noqa: BLE001 - one broken case must not lose the others' numbers
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc()[-3000:]
    try:
        row["model"] = perfmodel.predict(row)
        row["model_baseline"] = perfmodel.predict_baseline(row)
    except Exception as exc:  # noqa: BLE001 - e.g. a sparse case whose generation failed has no nnz
        row["model_error"] = f"{type(exc).__name__}: {exc}"
    return row


def machine() -> dict[str, Any]:
    """GPU, arch, versions (torch, CUDA, nvcc, pycuda, driver) and edgec's full machine description."""
    import torch

    from edgec.machine import describe_machine
    from edgec.kernels.loader import device_arch, nvcc_version

    props = torch.cuda.get_device_properties(0)
    info = {"gpu": props.name, "arch": device_arch(), "memory_gib": round(props.total_memory / 2**30, 1),
            "sm_count": props.multi_processor_count, "l2_bytes": getattr(props, "L2_cache_size", None),
            "torch": torch.__version__, "torch_cuda": torch.version.cuda, "nvcc": nvcc_version(),
            "python": platform.python_version(), "host": platform.node()}
    try:
        import pycuda
        import pycuda.driver as drv

        info["pycuda"] = pycuda.VERSION_TEXT
        info["cuda_driver"] = drv.get_driver_version()
    except Exception:  # noqa: BLE001 - descriptive only
        pass
    info["description"] = describe_machine("cuda:0")
    return info


def run(quick: bool = False, iters: int = 100, warmup: int = 20, progress: Progress | None = None,
        trials: int = 3, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run every case on GPU 0; returns the results document (schema ``edgec.kernels.bench/2``).

    Raises :class:`EdgecError` first (see :func:`require_gpu`) when the kernels cannot run here.
    """
    if iters < 1 or warmup < 0 or trials < 1:
        raise EdgecError(f"iters={iters}, warmup={warmup}, trials={trials}: need iters >= 1, warmup >= 0, trials >= 1",
                         hint="e.g. --iters 100 --warmup 20")
    require_gpu()
    import torch

    say = progress or (lambda _msg: None)
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False  # FP32 references are FP32
    torch.backends.cudnn.allow_tf32 = False
    say("measuring device copy bandwidth")
    copy_gbps = copy_bandwidth_gbps()
    flush = L2Flush()
    rows = []
    for case in cases(quick, only):
        t0 = time.perf_counter()
        row = run_case(case, iters, warmup, trials, flush, copy_gbps, autotune=not quick)
        rows.append(row)
        say(f"{_label(row):34} {time.perf_counter() - t0:5.1f} s" + (f"  ERROR {row['error']}" if "error" in row else ""))
    return {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "timing": "device: CUPTI kernel time (torch.profiler), L2 flushed (2x L2 buffer) before every call, "
                      "edgec and baseline alike; e2e: host wall time of call + synchronize (median)",
            "iters": iters, "warmup": warmup, "trials": trials, "quick": quick, "tolerance_rel": TOL,
            "copy_bandwidth_gbps": copy_gbps, "l2_flush_bytes": flush.nbytes, "machine": machine(), "results": rows}


def _label(r: dict[str, Any]) -> str:
    s = r["shape"]
    if r["op"] == "lowbit_linear":
        return f"W{r['bits']} m={s[0]} {s[1]}x{s[2]}"
    if r["op"] == "int8_linear":
        return f"INT8 m={s[0]} {s[1]}x{s[2]}"
    return f"sparse conv {s[1]}->{s[4]} {s[2]}x{s[3]} {int(r['sparsity'] * 100)}% b{s[0]}"


def _f(v: Any, fmt: str = "8.1f") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and v is not None else " " * (int(fmt.split(".")[0]) - 1) + "-"


def format_table(doc: dict[str, Any]) -> str:
    """The results as a fixed-width text table (one line per case), device times in us, L2 flushed."""
    lines = [f"GPU: {doc['machine']['gpu']} ({doc['machine']['arch']}); measured copy bandwidth "
             f"{doc['copy_bandwidth_gbps']:.0f} GB/s; {doc['timing']}",
             f"{'case':34} {'edgec':>8} {'e2e':>8} {'model':>8} | {'dense':>8} {'e2e':>8} {'model':>8} | "
             f"{'speedup':>7} {'goal':>5}  {'GB/s':>6} {'%copy':>5}  {'rel err':>8}"]
    for r in doc["results"]:
        if "error" in r:
            lines.append(f"{_label(r):34} ERROR {r['error'][:150]}")
            continue
        e, b = r.get("edgec", {}), r.get("baseline", {})
        goal = f"{r['goal']:4.1f}x" if r.get("goal") else "    -"
        mark = "" if r.get("meets_goal") is None else (" met" if r["meets_goal"] else " MISSED")
        frac = r.get("fraction_of_copy_bandwidth")
        lines.append(
            f"{_label(r):34} {_f(e.get('median_us'))} {_f(e.get('e2e_us'))} {_f(r.get('model', {}).get('predicted_us'))} | "
            f"{_f(b.get('median_us'))} {_f(b.get('e2e_us'))} {_f(r.get('model_baseline', {}).get('predicted_us'))} | "
            f"{_f(r.get('speedup'), '6.2f')}x {goal}  {_f(r.get('achieved_gbps'), '6.0f')} "
            f"{_f(None if frac is None else 100 * frac, '4.0f')}%  {r.get('max_rel_err', float('nan')):8.1e}"
            f"{'' if r.get('ok', True) else ' WRONG'}{mark}")
    lines.append("edgec/dense: device us (CUPTI, cold L2); e2e: host us per call incl. sync; model: static "
                 "prediction (edgec.kernels.perfmodel); speedup = dense device / edgec device")
    return "\n".join(lines)


def default_output(doc: dict[str, Any], folder: Path) -> Path:
    """``<folder>/kernels-<GPU name>.json``, the file name benchmarks/results/ uses."""
    return Path(folder) / f"kernels-{doc['machine']['gpu'].replace(' ', '_')}.json"

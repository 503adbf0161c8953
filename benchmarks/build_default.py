"""Benchmark: the default `edgec build` from a cold start, checked against the issue's targets.

Runs `edgec build` (the built-in `digits` recipe) in a fresh output folder in a subprocess, so the
time includes interpreter start-up and imports, then reads the report and prints one table:

    build wall time            < 180 s
    teacher / student params   >= 5x
    INT8 vs FP32 accuracy      drop <= 1 point
    INT8 ORT vs teacher torch  >= 3x faster at batch 1 (p50; both measured in the same run)

Usage: python benchmarks/build_default.py [--out benchmarks/results/build_default.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name, as `edgec bench` records it."""
    from edgec.bench.machine import cpu_info

    return cpu_info()["model"] or platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "build_default.json")
    ap.add_argument("--recipe", default="digits")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="edgec-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "edgec", "build", args.recipe, "--out", str(run_dir), "--quiet"],
                              capture_output=True, text=True)
        cold = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stderr[-4000:], file=sys.stderr)
            return proc.returncode
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "edgec", "build", args.recipe, "--out", str(run_dir), "--quiet"],
                       capture_output=True, text=True, check=True)
        warm = time.perf_counter() - t0
        report = json.loads((run_dir / "report.json").read_text())

    m, s = report["models"], report["summary"]
    drop_points = (m["student_fp32_onnx"]["accuracy"] - m["student_int8"]["accuracy"]) * 100
    rows = [
        ("cold build wall time (s)", cold, "< 180", cold < 180),
        ("cached re-build wall time (s)", warm, "seconds", warm < 30),
        ("teacher/student params", s["param_reduction"], ">= 5x", s["param_reduction"] >= 5),
        ("INT8 accuracy drop vs FP32 (points)", drop_points, "<= 1", drop_points <= 1.0),
        ("INT8 ORT speed-up vs teacher torch, batch 1 p50", s["int8_onnx_speedup_vs_teacher_torch"], ">= 3x",
         s["int8_onnx_speedup_vs_teacher_torch"] >= 3),
    ]
    print(f"\nedgec build {args.recipe}: {cpu_model()}, {os.cpu_count()} cores\n")
    print(f"{'metric':<48} {'value':>10}  {'target':<10} ok")
    for name, value, target, ok in rows:
        print(f"{name:<48} {value:>10.2f}  {target:<10} {'yes' if ok else 'NO'}")
    print(f"\n{'model':<20} {'runtime':<12} {'params':>9} {'accuracy':>9} {'p50 ms':>8} {'p99 ms':>8} {'thr/s':>9}")
    for name, v in m.items():
        print(f"{name:<20} {v['runtime']:<12} {v['params']:>9,} {v['accuracy']:>9.4f} "
              f"{v['latency_ms']['p50']:>8.3f} {v['latency_ms']['p99']:>8.3f} {v['throughput_per_s']:>9,.0f}")
    result = {
        "benchmark": "build_default", "recipe": args.recipe, "edgec_version": report["edgec_version"],
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "cold_build_s": cold, "cached_build_s": warm,
        "checks": [{"metric": n, "value": v, "target": t, "ok": ok} for n, v, t, ok in rows],
        "models": m, "summary": s,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark edgec's CUDA kernels against cuBLAS / cuDNN (FP16) on this GPU, L2 flushed, CUPTI device time.

    python benchmarks/kernels.py                      # table on stdout + benchmarks/results/kernels-<gpu>.json
    python benchmarks/kernels.py --quick --out k.json # 4 cases, for a smoke run

A thin script over :mod:`edgec.kernels.bench` (the same code as ``edgec kernels bench``), which says what is
measured and how. Needs a CUDA GPU, pycuda and nvcc. Without them it says so and exits 0, writing nothing, so it
can run unconditionally in a benchmark job. The full run takes about two minutes on an H200.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgec.atomic import atomic_write_json
from edgec.kernels import bench


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="results JSON (default benchmarks/results/kernels-<gpu>.json)")
    ap.add_argument("--iters", type=int, default=50, help="timed calls per case and side (default 50)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--trials", type=int, default=3, help="fresh random inputs checked against FP32 per case")
    ap.add_argument("--quick", action="store_true", help="4 cases, for a smoke run")
    ap.add_argument("--only", default="", help="comma-separated ops to run: lowbit, int8, sparse (default all)")
    args = ap.parse_args(argv)
    reason = bench.gpu_missing()
    if reason:
        print(f"kernels benchmark skipped: {reason}. No results written.")
        return 0
    only = tuple(w.strip() for w in args.only.split(",") if w.strip())
    doc = bench.run(quick=args.quick, iters=args.iters, warmup=args.warmup, trials=args.trials, progress=print,
                    only=only)
    print(bench.format_table(doc))
    out = args.out or bench.default_output(doc, Path(__file__).parent / "results")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, doc)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark edgec's CUDA kernels against torch's dense ops (cuDNN / cuBLAS) on this GPU.

    python benchmarks/kernels.py                      # table on stdout + benchmarks/results/kernels-<gpu>.json
    python benchmarks/kernels.py --quick --out k.json

A thin script over :mod:`edgec.kernels.bench` (the same code as ``edgec kernels bench``), which
says what is measured and how. Needs a CUDA GPU, pycuda and nvcc. Without them it says so and
exits 0, writing nothing, so it can run unconditionally in a benchmark job.
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
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="fewer shapes, for a smoke run")
    args = ap.parse_args(argv)
    reason = bench.gpu_missing()
    if reason:
        print(f"kernels benchmark skipped: {reason}. No results written.")
        return 0
    doc = bench.run(quick=args.quick, iters=args.iters, warmup=args.warmup, progress=print)
    print(bench.format_table(doc))
    out = args.out or bench.default_output(doc, Path(__file__).parent / "results")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, doc)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the bench harness's own cost, and the gate's detection power and false-alarm rate.

1. Overhead: `measure_latency` timing an empty call (host clock). Every latency sample includes
   this; target p50 < 5 us on a 2-core CPU, so that a 0.05 ms model is measured to within 10%.
2. Gate statistics on simulated runs: for each noise model, sample count and true slowdown, the
   fraction of `seeds` simulated baseline/current pairs that `compare_samples` flags (threshold 5%,
   alpha 0.01). Rows below 5% slowdown are false alarms (target <= 1%), the 5% row is the designed
   bound (~alpha), rows above are detection power; rows with threshold 0 (4x the pairs) check that
   the test alone flags identical distributions at about alpha.

Usage: python benchmarks/bench_overhead.py [--seeds 500] [--out benchmarks/results/bench_overhead.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgec.atomic import atomic_write_json  # noqa: E402
from edgec.bench.results import describe_machine  # noqa: E402
from edgec.bench.stats import compare_samples  # noqa: E402
from edgec.bench.timing import measure_latency  # noqa: E402

SLOWDOWNS = (0.0, 0.03, 0.05, 0.07, 0.10, 0.20)
SCENARIOS = (("lognormal", 0.05, 200), ("normal", 0.05, 200), ("lognormal", 0.10, 50))
THRESHOLD, ALPHA = 0.05, 0.01


def overhead(runs: int) -> dict:
    """What one sample of an empty call reads (clock reads + call), and what one timed iteration
    costs in wall time (loop bookkeeping and the final statistics included)."""
    measure_latency(lambda: None, warmup_runs=10_000, warmup_s=0.2, min_runs=100, min_duration_s=0)
    t0 = time.perf_counter()
    s = measure_latency(lambda: None, warmup_runs=0, warmup_s=0.0, min_runs=runs,
                        min_duration_s=0.0, max_runs=runs)
    wall = time.perf_counter() - t0
    us = {q: getattr(s, q) * 1e3 for q in ("min", "p50", "p90", "p99", "mean")}
    return {"runs": s.count, "sample_us": us, "loop_us_per_run": wall / s.count * 1e6,
            "wall_s": wall, "clock": s.clock}


def fail_rate(kind: str, noise: float, n: int, slowdown: float, threshold: float, seeds: int) -> float:
    fails = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        draw = ((lambda s: s * rng.lognormal(0.0, noise, n)) if kind == "lognormal"
                else (lambda s: s * rng.normal(1.0, noise, n)))
        base, cur = draw(1.0), draw(1.0 + slowdown)
        fails += compare_samples(cur, base, threshold=threshold, alpha=ALPHA, n_boot=0).regressed
    return fails / seeds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=500)
    ap.add_argument("--runs", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_overhead.json")
    args = ap.parse_args()

    load = os.getloadavg()
    ov = overhead(args.runs)
    print(f"harness overhead, empty call, {ov['runs']:,} samples ({ov['clock']}); "
          f"load average {load[0]:.2f} on {os.cpu_count()} CPUs")
    print("| sample min us | sample p50 us | sample p90 us | sample p99 us | loop us/run | target p50 < 5 us |")
    print("|---:|---:|---:|---:|---:|---|")
    u = ov["sample_us"]
    print(f"| {u['min']:.3f} | {u['p50']:.3f} | {u['p90']:.3f} | {u['p99']:.3f} | "
          f"{ov['loop_us_per_run']:.3f} | {'met' if u['p50'] < 5 else 'NOT met'} |")

    rows = []
    t0 = time.perf_counter()
    for kind, noise, n in SCENARIOS:
        for slowdown in SLOWDOWNS:
            rows.append({"noise": f"{kind} {noise:.0%}", "n_per_side": n, "slowdown": slowdown,
                         "threshold": THRESHOLD, "seeds": args.seeds,
                         "fail_rate": fail_rate(kind, noise, n, slowdown, THRESHOLD, args.seeds)})
        rows.append({"noise": f"{kind} {noise:.0%}", "n_per_side": n, "slowdown": 0.0,
                     "threshold": 0.0, "seeds": 4 * args.seeds,
                     "fail_rate": fail_rate(kind, noise, n, 0.0, 0.0, 4 * args.seeds)})
    stats_s = time.perf_counter() - t0
    print(f"\ngate decisions on simulated baseline/current pairs (alpha {ALPHA}; {stats_s:.1f} s)")
    print("| noise | samples/side | true slowdown | threshold | pairs | flagged | meaning |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        meaning = ("the test alone, no threshold: calibration (expect ~alpha)" if r["threshold"] == 0
                   else "false alarm (target <= 1%)" if r["slowdown"] < THRESHOLD
                   else "exactly at the threshold: designed bound ~alpha" if r["slowdown"] == THRESHOLD
                   else "detection power")
        print(f"| {r['noise']} | {r['n_per_side']} | {r['slowdown']:.0%} | {r['threshold']:.0%} | "
              f"{r['seeds']} | {r['fail_rate']:.1%} | {meaning} |")

    machine, fingerprint, _ = describe_machine("cpu")
    atomic_write_json(args.out, {"overhead": ov, "gate": rows, "seeds": args.seeds, "alpha": ALPHA,
                                 "load_average": load, "machine": machine,
                                 "machine_fingerprint": fingerprint})
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

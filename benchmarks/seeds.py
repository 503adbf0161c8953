"""Reproduce the seed papers' findings side by side, in one run, on real data.

    FitNets:  plain back-propagation vs logit KD vs hints (+KD) for the same thin student
    Pruning:  Taylor vs minimum weight vs mean activation vs random at 2x and 4x fewer FLOPs
    Quantized training: BinaryConnect vs stochastic rounding vs full precision at 1, 2, 8 bits

Each part lives in its own script (``seeds_fitnets.py``, ``seeds_pruning.py``,
``seeds_quantized.py``, each runnable alone); this one runs them with one seed on one dataset and
writes ``benchmarks/results/seeds.md`` (tables) and ``seeds.json`` (every number, the machine).

Usage:
    python benchmarks/seeds.py --data ../shared/data/mnist            # full: ~30 min on 2 cores
    python benchmarks/seeds.py --quick                                 # minutes; sklearn digits if no --data
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# part name -> (module, how that module renders one result as markdown)
PARTS = {
    "fitnets": ("seeds_fitnets", lambda m, r: m.markdown(r)),
    "pruning": ("seeds_pruning", lambda m, r: m.table([r])),
    "quantized": ("seeds_quantized", lambda m, r: m.markdown(r)),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="MNIST IDX folder (default: sklearn digits)")
    ap.add_argument("--quick", action="store_true", help="short schedules for smoke tests")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=sorted(PARTS), action="append", help="run only these parts")
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = ap.parse_args()

    results, sections = {}, []
    for name in args.only or list(PARTS):
        module_name, render = PARTS[name]
        module = importlib.import_module(module_name)
        t0 = time.perf_counter()
        result = module.run(args.quick, args.data, args.seed)
        seconds = time.perf_counter() - t0
        results[name] = {"seconds": seconds, "result": result}
        sections.append(f"## {name} ({seconds / 60:.1f} min)\n\n{render(module, result)}\n")
        print(sections[-1], flush=True)

    header = (f"# Seed-paper findings, reproduced\n\ndata: {args.data or 'sklearn digits'} · seed {args.seed} · "
              f"{'quick' if args.quick else 'full'} mode · {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores · python {platform.python_version()}\n")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = "seeds-quick" if args.quick else "seeds"
    (args.out_dir / f"{stem}.md").write_text(header + "\n" + "\n".join(sections))
    (args.out_dir / f"{stem}.json").write_text(json.dumps(
        {"data": str(args.data) if args.data else "digits", "seed": args.seed, "quick": args.quick,
         "machine": {"platform": platform.platform(), "cores": os.cpu_count()}, "parts": results},
        indent=1, default=str) + "\n")
    print(f"wrote {args.out_dir / stem}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

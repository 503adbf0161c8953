"""The command line shared by the seed-paper benchmark scripts (seeds_fitnets.py, seeds_quantized.py)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path


def seed_main(doc: str, run: Callable[[bool, Path | None, int], dict], markdown: Callable[[dict], str],
              quick_help: str) -> None:
    """Parse ``--quick/--data/--out/--seed/--threads``, run, print the table and CPU/wall time, write JSON."""
    import torch

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--data", type=Path, default=None,
                        help="MNIST folder (train-*-ubyte.gz); default: scikit-learn's 8x8 digits")
    parser.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest on a shared 2-core machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    result = run(args.quick, args.data, args.seed)
    result["total_seconds"] = time.perf_counter() - t0
    result["total_cpu_seconds"] = time.process_time() - c0  # = wall time on an idle machine (1 thread)
    print(markdown(result))
    print(f"\ntotal {result['total_seconds']:.0f} s wall, {result['total_cpu_seconds']:.0f} s CPU")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")

"""Benchmark: Taylor vs weight / activation / random feature-map pruning (Molchanov et al., 2017).

Trains one CNN (``teacher_cnn`` width 16, fc 64) on MNIST (the 8,000 real digits in
``../shared/data/mnist``; scikit-learn's 8x8 digits without ``--data``), then prunes copies of it
with each criterion to 2x and to 4x fewer FLOPs (MACs) under the same budget: ``num_steps``
pruning steps per halving (each removing the same share of the remaining FLOPs), a fixed number
of SGD fine-tuning mini-batches after every step; the 4x model continues from the 2x one. Reports
test accuracy after the schedule and after one more fine-tuning epoch, FLOPs and parameters.

Aims (from the issue): Taylor reaches >= 2x fewer FLOPs for <= 1 point of accuracy, and Taylor
is ahead of random.

Usage: python benchmarks/seeds_pruning.py [--quick] [--data ../shared/data/mnist]
                                           [--seeds 0 1 2] [--out results.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from edgec.compress.prune import prune
from edgec.configs import PruneConfig
from edgec.data import load_dataset
from edgec.models import ModelSpec, count_flops, count_params
from edgec.train import TrainConfig, evaluate, fit, set_seed

CRITERIA = ("taylor", "weight", "activation", "random")
FULL = {"limit": None, "epochs": 8, "num_steps": 6, "finetune_batches": 30,
        "criterion_batches": 10, "final_epochs": 1}
QUICK = {"limit": 3000, "epochs": 4, "num_steps": 4, "finetune_batches": 20,
         "criterion_batches": 5, "final_epochs": 0}


def cpu_model() -> str:
    """The CPU's model name, as `edgec bench` records it."""
    from edgec.machine import cpu_info

    return cpu_info()["model"] or platform.machine()


def damage(report: dict[str, Any]) -> list[float]:
    """Validation accuracy lost by each pruning step before its fine-tuning, in points."""
    before = [report["original"]["val_accuracy"]] + [r["val_accuracy"] for r in report["steps"]]
    return [100 * (b - r["val_accuracy_pruned"]) for b, r in zip(before, report["steps"])]


def run(quick: bool, data_dir: Path | None, seed: int = 0) -> dict[str, Any]:
    """Train, prune with every criterion to 2x and 4x fewer FLOPs; return the measurements.

    Example:
        >>> result = run(quick=True, data_dir=None, seed=0)
        >>> result["runs"]["taylor"]["2x"]["test_accuracy"]
    """
    s = QUICK if quick else FULL
    t0 = time.perf_counter()
    name = "mnist" if data_dir is not None else "digits"
    ds = load_dataset(name, data_dir, seed=seed, limit=s["limit"])
    train, val, test = (ds.train.x, ds.train.y), (ds.val.x, ds.val.y), (ds.test.x, ds.test.y)
    spec = ModelSpec("teacher_cnn", {"width": 16, "fc": 64}, ds.input_shape[0], ds.num_classes,
                     ds.input_shape[1:])
    set_seed(seed)
    model = spec.build()
    fit(model, train, val, TrainConfig(epochs=s["epochs"], lr=3e-3, seed=seed), progress=False)
    shape = spec.input_shape()
    base = {"test_accuracy": evaluate(model, *test)[1], "flops": count_flops(model, shape),
            "params": count_params(model)}
    # Fine-tuning: SGD (momentum 0.9, lr 1e-2) for finetune_batches after every pruning step; then,
    # measured separately, final_epochs more epochs of the same optimizer on a copy. The 4x run
    # continues from the 2x model *before* that final fine-tuning, so every criterion gets exactly
    # the same budget: 2 * num_steps steps of finetune_batches, plus the final epochs.
    finetune = TrainConfig(epochs=0, lr=1e-2, optimizer="sgd", momentum=0.9, scheduler="none",
                           seed=seed)
    final = TrainConfig(epochs=s["final_epochs"], lr=1e-2, optimizer="sgd", momentum=0.9,
                        scheduler="cosine", seed=seed)
    runs: dict[str, Any] = {}
    for criterion in CRITERIA:
        current, current_spec, runs[criterion] = model, spec, {}
        for label in ("2x", "4x"):
            t1 = time.perf_counter()
            current, current_spec, report = prune(
                current, current_spec, train, val,
                PruneConfig(criterion=criterion, target_flops=0.5, num_steps=s["num_steps"],
                            finetune_batches=s["finetune_batches"], criterion_batches=s["criterion_batches"],
                            train=finetune),
                progress=False)
            flops = count_flops(current, shape)
            row = {"test_accuracy": evaluate(current, *test)[1], "flops": flops,
                   "flops_ratio": flops / base["flops"], "params": count_params(current),
                   "params_ratio": count_params(current) / base["params"],
                   "steps": len(report["steps"]), "channels": report["channels"],
                   "step_damage": damage(report)}
            if s["final_epochs"]:
                tuned = copy.deepcopy(current)
                fit(tuned, train, val, final, progress=False)
                row["test_accuracy_final"] = evaluate(tuned, *test)[1]
            row["seconds"] = time.perf_counter() - t1
            runs[criterion][label] = row
    return {"benchmark": "seeds_pruning", "dataset": ds.describe()["sizes"] | {"name": name},
            "seed": seed, "quick": quick, "settings": s, "model": spec.to_dict(),
            "baseline": base, "runs": runs, "seconds": time.perf_counter() - t0,
            "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                        "torch_threads": torch.get_num_threads(),
                        "platform": platform.platform(), "python": platform.python_version(),
                        "torch": torch.__version__}}


def table(results: list[dict[str, Any]]) -> str:
    """A markdown table of test accuracy per criterion and FLOPs target: the mean over seeds, with
    min..max when there are several, and the mean drop in points from the unpruned model."""
    def cell(values: list[float], base: list[float]) -> str:
        mean = sum(values) / len(values)
        drop = sum(100 * (b - v) for v, b in zip(values, base)) / len(values)
        spread = f" ({min(values):.2%}..{max(values):.2%})" if len(values) > 1 else ""
        return f"{mean:.2%}{spread}, {-drop:+.2f}"

    base = [r["baseline"]["test_accuracy"] for r in results]
    first = results[0]
    keys = [("2x", "test_accuracy"), ("4x", "test_accuracy")]
    if "test_accuracy_final" in first["runs"]["taylor"]["2x"]:
        keys = [("2x", "test_accuracy"), ("2x", "test_accuracy_final"),
                ("4x", "test_accuracy"), ("4x", "test_accuracy_final")]
    names = {"test_accuracy": "schedule", "test_accuracy_final": "+1 epoch"}
    header = " | ".join(f"{k} fewer FLOPs, {names[f]}" for k, f in keys)
    lines = [f"| criterion | {header} | params kept 2x / 4x | val points lost per step "
             f"before fine-tuning |",
             "|---" * (len(keys) + 3) + "|",
             f"| unpruned ({first['baseline']['flops']:,} MACs, {first['baseline']['params']:,} "
             f"params) | " + " | ".join([cell(base, base).split(",")[0]] + [""] * (len(keys) - 1))
             + " | 100% | |"]
    for c in CRITERIA:
        cells = [cell([r["runs"][c][k][f] for r in results], base) for k, f in keys]
        params = " / ".join(f"{first['runs'][c][k]['params_ratio']:.0%}" for k in ("2x", "4x"))
        hits = [d for r in results for k in ("2x", "4x") for d in r["runs"][c][k]["step_damage"]]
        lines.append(f"| {c} | " + " | ".join(cells) + f" | {params} | "
                     f"{sum(hits) / len(hits):.2f} (max {max(hits):.1f}) |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 3,000-digit, shorter run (~1 min)")
    ap.add_argument("--data", type=Path, default=None, help="MNIST folder (default: 8x8 digits)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: these small convs run fastest on one thread of a "
                         "busy 2-core machine)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = [run(args.quick, args.data, seed) for seed in args.seeds]
    r0 = results[0]
    ratios = {k: r0["runs"]["taylor"][k]["flops_ratio"] for k in ("2x", "4x")}
    print(f"\nTaylor pruning benchmark: {r0['dataset']}, seeds {args.seeds}, "
          f"{'quick' if args.quick else 'full'}; {r0['machine']['cpu']}, "
          f"{r0['machine']['cores']} cores, {args.threads} torch thread(s); "
          f"{sum(r['seconds'] for r in results):.0f} s\n")
    print(table(results))
    print(f"\nFLOPs kept (taylor, seed {args.seeds[0]}): 2x {ratios['2x']:.3f}, "
          f"4x {ratios['4x']:.3f}")
    taylor_drop = [100 * (r["baseline"]["test_accuracy"]
                          - r["runs"]["taylor"]["2x"]["test_accuracy"]) for r in results]
    ahead = all(r["runs"]["taylor"][k]["test_accuracy"] >= r["runs"]["random"][k]["test_accuracy"]
                for r in results for k in ("2x", "4x"))
    print(f"aims (after the schedule, before the extra epoch): taylor 2x drop <= 1 point: "
          f"{'yes' if max(taylor_drop) <= 1 else 'NO'} (max {max(taylor_drop):.2f}); "
          f"taylor >= random at 2x and 4x in every seed: {'yes' if ahead else 'NO'}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"results": results, "table": table(results)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does FitNets' MNIST ordering reproduce? Plain back-prop vs logit KD vs FitNets hints (+KD).

Romero et al. (arXiv 1412.6550, Table 4) trained one ~30K-parameter thin, deep student on MNIST
three ways: standard back-propagation 1.9% error, KD 0.65%, hints + KD 0.51% (teacher ~361K
params, 0.55%). This script trains one teacher and then the SAME thin student (same
initialisation) three ways with edgec's methods:

    plain     fit() on the labels
    kd        distill(method="kd"): Hinton et al.'s T^2-scaled KL, T=4, alpha=0.9
    fitnets   distill(method="fitnets"): stage 1 hints (Eq. 3) + stage 2 Eq. (2), tau=3,
              lambda 4 -> 1 annealed per epoch (the paper's settings)

and reports test errors, parameter counts and times. Data: the 8,000 real MNIST digits in
``--data`` (the first 8,000 of the official test set; edgec splits 20% off as test, 10% of the
rest as validation), or scikit-learn's 8x8 digits without ``--data``. Full mode takes ~10 minutes
on 2 CPU cores, ``--quick`` ~1 minute (fewer epochs, 2,000 training digits).

Example:
    python benchmarks/seeds_fitnets.py --data ../shared/data/mnist --out fitnets.json
    python benchmarks/seeds_fitnets.py --quick
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from edgec.compress.distill import distill
from edgec.data import load_dataset
from edgec.models import count_params, create_model
from edgec.train import TrainConfig, evaluate, fit, set_seed

PAPER_MNIST_ERROR = {"teacher": 0.55, "plain": 1.9, "kd": 0.65, "fitnets": 0.51}  # %, Table 4
TEACHER = {"name": "teacher_cnn", "params": {"width": 32, "fc": 256, "dropout": 0.3}}  # ~322K params
STUDENT = {"name": "fitnet", "params": {"widths": [8, 16, 32], "convs_per_stage": 3}}  # ~31K, 9 convs
# (teacher epochs, FitNets stage-2 epochs, FitNets stage-1 epochs, training-digit limit); plain
# and KD students train for stage 1 + stage 2 epochs.
SETTINGS = {False: (8, 12, 6, None), True: (4, 4, 2, 2000)}
# Adam with a cosine schedule for everyone; the teacher is also regularised (5.8K digits only).
STUDENT_TRAIN = {"batch_size": 128, "lr": 3e-3, "optimizer": "adam", "scheduler": "cosine"}
TEACHER_TRAIN = {**STUDENT_TRAIN, "optimizer": "adamw", "weight_decay": 5e-4}


def _build(spec: dict[str, Any], ds: Any, seed: int) -> torch.nn.Module:
    set_seed(seed)
    return create_model(spec["name"], in_channels=ds.input_shape[0], num_classes=ds.num_classes,
                        input_size=tuple(ds.input_shape[1:]), **spec["params"])


def _cpu_model() -> str:
    """The CPU's model name, as `edgec bench` records it."""
    from edgec.bench.machine import cpu_info

    return cpu_info()["model"] or platform.machine()


def run(quick: bool, data_dir: Path | None, seed: int = 0) -> dict:
    """Train the teacher and the three students; return the results as a JSON-able dict.

    Example:
        >>> result = run(quick=True, data_dir=None)
        >>> [r["method"] for r in result["students"]]
        ['plain', 'kd', 'fitnets']
    """
    t_epochs, s_epochs, hint_epochs, limit = SETTINGS[quick]
    ds = (load_dataset("mnist", data_dir, seed=seed, limit=limit) if data_dir is not None
          else load_dataset("digits", seed=seed, limit=limit))
    train, val = (ds.train.x, ds.train.y), (ds.val.x, ds.val.y)

    t0, c0 = time.perf_counter(), time.process_time()
    teacher = _build(TEACHER, ds, seed)
    fit(teacher, train, val, TrainConfig(epochs=t_epochs, seed=seed, **TEACHER_TRAIN),
        description="teacher", progress=False)
    teacher_row = {"params": count_params(teacher), "epochs": t_epochs,
                   "test_error": 100 * (1 - evaluate(teacher, ds.test.x, ds.test.y)[1]),
                   "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}

    students = []
    for method in ("plain", "kd", "fitnets"):
        student = _build(STUDENT, ds, seed + 1)  # the same initial weights for every method
        # The same number of epochs for all: FitNets' stage 1 comes out of its budget.
        epochs = s_epochs if method == "fitnets" else s_epochs + hint_epochs
        student_cfg = TrainConfig(epochs=epochs, seed=seed, **STUDENT_TRAIN)
        t0, c0 = time.perf_counter(), time.process_time()
        if method == "plain":
            result = fit(student, train, val, student_cfg, description="plain", progress=False)
        else:
            params = {"hint_epochs": hint_epochs} if method == "fitnets" else {}
            result = distill(student, teacher, train, val, student_cfg, method=method,
                             method_params=params, progress=False)
        students.append({
            "method": method,
            "epochs": f"{hint_epochs} + {s_epochs}" if method == "fitnets" else str(epochs),
            "test_error": 100 * (1 - evaluate(result.model, ds.test.x, ds.test.y)[1]),
            "val_accuracy": result.best_val_accuracy, "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0,
            "paper_error": PAPER_MNIST_ERROR[method]})
    s_params = count_params(student)
    return {
        "benchmark": "seeds_fitnets", "quick": quick, "seed": seed, "dataset": ds.name,
        "sizes": {"train": len(ds.train), "val": len(ds.val), "test": len(ds.test)},
        "input_shape": list(ds.input_shape), "teacher_model": TEACHER, "student_model": STUDENT,
        "teacher_train": TEACHER_TRAIN, "student_train": STUDENT_TRAIN,
        "teacher": {**teacher_row, "paper_error": PAPER_MNIST_ERROR["teacher"]},
        "student_params": s_params, "param_ratio": teacher_row["params"] / s_params,
        "students": students,
        "machine": {"platform": platform.platform(), "cpu": _cpu_model(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
    }


def markdown(result: dict) -> str:
    """The results as a markdown table (errors in %, on the held-out test split)."""
    t = result["teacher"]
    n = result["sizes"]
    lines = [f"{result['dataset']} ({n['train']} train / {n['val']} val / {n['test']} test), "
             f"seed {result['seed']}, {'quick' if result['quick'] else 'full'} mode, "
             f"teacher/student params {t['params']:,} / {result['student_params']:,} "
             f"= {result['param_ratio']:.1f}x",
             "",
             "| model | epochs | test error | paper (MNIST) | wall / CPU time |",
             "|---|---|---|---|---|"]
    for name, r in [("teacher", t)] + [(f"student, {r['method']}", r) for r in result["students"]]:
        lines.append(f"| {name} | {r['epochs']} | {r['test_error']:.2f}% | {r['paper_error']}% | "
                     f"{r['seconds']:.0f} s / {r['cpu_seconds']:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    from seed_cli import seed_main  # benchmarks/ is on sys.path when run as a script

    seed_main(__doc__, run, markdown, quick_help="fewer epochs and digits (~1 minute)")


if __name__ == "__main__":
    main()

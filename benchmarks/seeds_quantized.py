"""Does Li et al.'s ordering reproduce? BinaryConnect vs stochastic rounding vs full precision.

Li et al., "Training Quantized Nets: A Deeper Understanding" (NeurIPS 2017, arXiv 1706.02379):
BinaryConnect (BC: a full-precision buffer W_r, forward/gradient at Q(W_r)) reaches a better optimum
than stochastic rounding (SR: W <- Q_s(W - lr * g), no full-precision copy), whose updates smaller
than the grid spacing only move a weight with small probability, so it stalls once the learning
rate is small; at 8 bits the grid is fine enough that both match full precision.

This script trains the SAME model from the SAME initial weights with the SAME budget and lr
schedule (Adam, cosine to 0) seven ways: full precision, and BC and SR at 1 bit (binary, alpha =
mean|w| per channel), 2 bits (ternary, TWN threshold) and 8 bits (uniform, max|w|/127), with edgec's
``train_quantized`` (first and last layer kept in float, the library default). It reports the test
accuracy of the deployable model (``finalize``: weights exactly scale * code) at fit's best
validation epoch, and the validation accuracy at the middle and at the end of training (how much
each method still gains once the learning rate is small).

Data: the 8,000 real MNIST digits in ``--data`` (edgec splits 20% off as test, 10% of the rest as
validation), or scikit-learn's 8x8 digits without ``--data``. Full mode takes ~10 minutes on 2
CPU cores, ``--quick`` ~1.5 minutes (fewer epochs, 3,000 training digits).

Example:
    python benchmarks/seeds_quantized.py --data ../shared/data/mnist --out quantized.json
    python benchmarks/seeds_quantized.py --quick
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import torch

from edgec.compress.qat import finalize, train_quantized
from edgec.data import load_dataset
from edgec.models import count_params, create_model
from edgec.train import TrainConfig, evaluate, fit, set_seed

MODEL = {"name": "teacher_cnn", "params": {"width": 8, "depth": 3, "convs_per_block": 2, "fc": 64}}
BITS = (1, 2, 8)
METHODS = ("binaryconnect", "stochastic_rounding")
# (epochs, training-digit limit)
SETTINGS = {False: (15, None), True: (4, 3000)}
TRAIN = dict(batch_size=64, lr=3e-3, optimizer="adam", scheduler="cosine")


def _build(ds: Any, seed: int) -> torch.nn.Module:
    set_seed(seed)  # the same initial weights for every run
    return create_model(MODEL["name"], in_channels=ds.input_shape[0], num_classes=ds.num_classes,
                        input_size=tuple(ds.input_shape[1:]), **MODEL["params"])


def _row(method: str, bits: int | None, result: Any, deployed: torch.nn.Module, ds: Any,
         t0: float, c0: float) -> dict:
    hist = [h["val_accuracy"] for h in result.history]
    return {"method": method, "bits": bits,
            "test_accuracy": evaluate(deployed, ds.test.x, ds.test.y)[1],
            "best_epoch": result.best_epoch, "val_accuracy_mid": hist[len(hist) // 2 - 1],
            "val_accuracy_final": hist[-1], "val_history": hist,
            "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


def run(quick: bool, data_dir: Path | None, seed: int = 0) -> dict:
    """Train full precision once and BC/SR at 1, 2 and 8 bits; return the results as a dict.

    Example:
        >>> result = run(quick=True, data_dir=None)
        >>> sorted({(r["method"], r["bits"]) for r in result["runs"]})[:2]
        [('binaryconnect', 1), ('binaryconnect', 2)]
    """
    epochs, limit = SETTINGS[quick]
    ds = (load_dataset("mnist", data_dir, seed=seed, limit=limit) if data_dir is not None
          else load_dataset("digits", seed=seed, limit=limit))
    train, val = (ds.train.x, ds.train.y), (ds.val.x, ds.val.y)
    config = TrainConfig(epochs=epochs, seed=seed, **TRAIN)

    runs = []
    t0, c0 = time.perf_counter(), time.process_time()
    model = _build(ds, seed)
    result = fit(model, train, val, config, description="float", progress=False)
    runs.append(_row("float", None, result, result.model, ds, t0, c0))
    for bits in BITS:
        for method in METHODS:
            t0, c0 = time.perf_counter(), time.process_time()
            result = train_quantized(_build(ds, seed), train, val, config, method=method, bits=bits,
                                     progress=False, description=f"{method} {bits}-bit")
            runs.append(_row(method, bits, result, finalize(result.model), ds, t0, c0))
    return {
        "benchmark": "seeds_quantized", "quick": quick, "seed": seed, "dataset": ds.name,
        "sizes": {"train": len(ds.train), "val": len(ds.val), "test": len(ds.test)},
        "model": MODEL, "params": count_params(model), "train": {"epochs": epochs, **TRAIN},
        "runs": runs,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
    }


def markdown(result: dict) -> str:
    """The results as a markdown table (accuracies in %, test split = deployable model)."""
    n = result["sizes"]
    by = {(r["method"], r["bits"]): r for r in result["runs"]}
    fp = by[("float", None)]
    lines = [f"{result['dataset']} ({n['train']} train / {n['val']} val / {n['test']} test), "
             f"seed {result['seed']}, {'quick' if result['quick'] else 'full'} mode, "
             f"{result['train']['epochs']} epochs, Adam lr {result['train']['lr']} cosine, "
             f"{result['params']:,} params (first/last layer float)",
             "",
             "| weights | full precision | BinaryConnect | stochastic rounding | BC - SR | "
             "val acc mid -> end: BC / SR | wall time BC / SR |",
             "|---|---|---|---|---|---|---|"]
    names = {1: "1 bit (binary)", 2: "2 bits (ternary)", 8: "8 bits (uniform)"}
    for bits in BITS:
        bc, sr = by[("binaryconnect", bits)], by[("stochastic_rounding", bits)]
        lines.append(
            f"| {names.get(bits, bits)} | {100 * fp['test_accuracy']:.2f}% | {100 * bc['test_accuracy']:.2f}% | "
            f"{100 * sr['test_accuracy']:.2f}% | {100 * (bc['test_accuracy'] - sr['test_accuracy']):+.2f} | "
            f"{100 * bc['val_accuracy_mid']:.1f} -> {100 * bc['val_accuracy_final']:.1f} / "
            f"{100 * sr['val_accuracy_mid']:.1f} -> {100 * sr['val_accuracy_final']:.1f} | "
            f"{bc['seconds']:.0f} s / {sr['seconds']:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    from seed_cli import seed_main  # benchmarks/ is on sys.path when run as a script

    seed_main(__doc__, run, markdown, quick_help="fewer epochs and digits (~1.5 minutes)")


if __name__ == "__main__":
    main()

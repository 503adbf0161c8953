"""Checking stages: ``verify`` (accuracy of every model through its runner) and ``bench`` (latency)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgec.artifacts import StageWork
from edgec.atomic import atomic_write_json
from edgec.console import say
from edgec.errors import VerificationFailed

if TYPE_CHECKING:
    from edgec.pipeline import BuildContext

# Models a build produces: report name -> (stage, file, runtime). "engine" means the engine stage's backend.
MODELS: dict[str, tuple[str, str, str]] = {
    "teacher": ("teacher", "teacher.safetensors", "torch"),
    "student": ("distill", "student.safetensors", "torch"),
    "student_fp32_onnx": ("export", "model.onnx", "onnxruntime"),
    "student_int8": ("quantize", "model.int8.onnx", "engine"),
}


def built_models(work: StageWork) -> dict[str, tuple[Path, str]]:
    """The models among ``work``'s parents: name -> (file, runtime)."""
    by_stage = {a.stage: a for a in work.parents}
    backend = by_stage["engine"].metrics["backend"]
    out = {}
    for name, (stage, filename, runtime) in MODELS.items():
        if stage in by_stage:
            out[name] = (by_stage[stage].file(filename), backend if runtime == "engine" else runtime)
    return out


def _open(path: Path, runtime: str, threads: int | None = None):
    from edgec.runtimes import open_runner

    opts = {}
    if threads:
        opts = {"threads": threads} if runtime == "torch" else {"intra_op_threads": threads}
    return open_runner(path, runtime=runtime, **opts)


def verify(ctx: BuildContext, work: StageWork) -> None:
    """Accuracy of every model on the test split, and INT8-vs-FP32 top-1 agreement; fail beyond tolerance."""
    from edgec.runtimes import predict

    test, v = ctx.dataset.test, ctx.recipe.verify
    preds: dict[str, np.ndarray] = {}
    results = {}
    for name, (path, runtime) in built_models(work).items():
        with _open(path, runtime) as runner:
            preds[name] = predict(runner, test.x).argmax(axis=1)
        acc = float((preds[name] == test.y).mean())
        results[name] = {"accuracy": acc, "runtime": runtime, "n": int(len(test.y))}
        say(f"  {name:<18} {runtime:<12} accuracy {acc:.4f} on {len(test.y)} test images")
    work.metrics["models"] = results
    problems = []
    if "student_int8" in preds:
        agreement = float((preds["student_int8"] == preds["student_fp32_onnx"]).mean())
        drop = results["student_fp32_onnx"]["accuracy"] - results["student_int8"]["accuracy"]
        work.metrics.update(int8_top1_agreement=agreement, int8_accuracy_drop=drop)
        say(f"  INT8 vs FP32: top-1 agreement {agreement:.4f}, accuracy drop {drop * 100:+.2f} points")
        if drop > v.max_int8_accuracy_drop:
            problems.append(f"INT8 accuracy drop {drop * 100:.2f} points > verify.max_int8_accuracy_drop "
                            f"{v.max_int8_accuracy_drop * 100:.2f}")
        if agreement < v.min_int8_top1_agreement:
            problems.append(f"INT8/FP32 top-1 agreement {agreement:.4f} < verify.min_int8_top1_agreement "
                            f"{v.min_int8_top1_agreement}")
    atomic_write_json(work.path / "verify.json", work.metrics)
    if problems:
        raise VerificationFailed("verification failed: " + "; ".join(problems),
                                 hint="try quantize.calibration.method: entropy or percentile, more calibration "
                                      "samples, or relax the verify tolerances if this is acceptable")


def _batch(x: np.ndarray, n: int) -> np.ndarray:
    """``n`` real test images (repeated if the split is smaller): realistic data, never zeros."""
    reps = -(-n // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:n])


def bench(ctx: BuildContext, work: StageWork) -> None:
    """Latency at batch 1 (p50/p90/p99...) and throughput at ``bench.batch_size`` for every model."""
    from edgec.bench.timing import bench_runner, cold_start

    b, x = ctx.recipe.bench, ctx.dataset.test.x
    timing = dict(warmup_runs=b.warmup_runs, warmup_s=b.warmup_s, min_runs=b.min_runs, min_duration_s=b.min_duration_s)
    results = {}
    for name, (path, runtime) in built_models(work).items():
        cold = cold_start(lambda p=path, r=runtime: _open(p, r, b.threads), x[:1])
        with _open(path, runtime, b.threads) as runner:
            lat = bench_runner(runner, _batch(x, 1), batch_size=1, **timing)
            thr = bench_runner(runner, _batch(x, b.batch_size), batch_size=b.batch_size, **timing)
            results[name] = {"runtime": runtime, "runner": runner.describe(), "cold_start_ms": cold,
                             "batch1": lat.to_dict(), f"batch{b.batch_size}": thr.to_dict(include_samples=False),
                             "throughput_per_s": thr.throughput}
        say(f"  {name:<18} {runtime:<12} p50 {lat.p50:.3f} ms  p99 {lat.p99:.3f} ms  cv {lat.cv:.1%}  "
            f"batch {b.batch_size}: {thr.throughput:,.0f}/s")
    work.metrics["models"] = {k: {"latency_ms": {q: v["batch1"][q] for q in ("p50", "p90", "p99")},
                                  "throughput_per_s": v["throughput_per_s"], "cv": v["batch1"]["cv"]}
                              for k, v in results.items()}
    atomic_write_json(work.path / "bench.json", {"batch_size": b.batch_size, "models": results})

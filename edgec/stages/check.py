"""Checking stages: ``verify`` (accuracy of every model through its runner) and ``bench`` (latency)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgec.artifacts import Artifact, StageWork
from edgec.atomic import atomic_write_json
from edgec.console import say
from edgec.errors import VerificationFailed

if TYPE_CHECKING:
    from edgec.pipeline import BuildContext

def model_files(arts: dict[str, Artifact]) -> dict[str, tuple[Path, str, Artifact]]:
    """The models a build produced: report name -> (file, runtime, artifact holding its params/FLOPs).

    ``student`` is the final FP32 student (pruned when pruning ran); the quantized one is
    ``student_int8`` (PTQ or QAT, QDQ ONNX) or ``student_lowbit`` (BinaryConnect / SR), run by the
    engine stage's backend.
    """
    student = arts.get("prune") or arts["distill"]
    out = {"teacher": (arts["teacher"].file("teacher.safetensors"), "torch", arts["teacher"]),
           "student": (student.file("student.safetensors"), "torch", student),
           "student_fp32_onnx": (arts["export"].file("model.onnx"), "onnxruntime", student)}
    q = arts.get("quantize")
    if q is not None:
        out[f"student_{q.metrics['kind']}"] = (q.file(q.metrics["file"]), arts["engine"].metrics["backend"], student)
    return out


def built_models(work: StageWork) -> dict[str, tuple[Path, str]]:
    """The models among ``work``'s parents: name -> (file, runtime)."""
    files = model_files({a.stage: a for a in work.parents})
    return {name: (path, runtime) for name, (path, runtime, _) in files.items()}


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
    if "student_lowbit" in preds:  # low-bit weights cost accuracy by design: reported, not gated
        work.metrics["lowbit_accuracy_drop"] = (results["student_fp32_onnx"]["accuracy"]
                                                - results["student_lowbit"]["accuracy"])
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
    """Latency at batch 1 and ``bench.batch_size`` for every model, by the code `edgec bench` runs.

    Writes ``bench.json``: the results-file fields of the run (machine, settings) and one results
    ``models`` entry per model; ``edgec.report`` merges it with params/FLOPs/accuracy into
    ``results.json`` (schema edgec.bench/1) for ``edgec gate``.
    """
    from dataclasses import asdict

    from edgec.bench.results import describe_machine
    from edgec.bench.run import Timing, bench_model

    b, x = ctx.recipe.bench, ctx.dataset.test.x
    timing = Timing(warmup_runs=b.warmup_runs, warmup_s=b.warmup_s, min_runs=b.min_runs, min_duration_s=b.min_duration_s)
    batches = sorted({1, b.batch_size})
    machine, fingerprint, warnings = describe_machine("cpu")
    results = {}
    for name, (path, runtime) in built_models(work).items():
        entry = bench_model(lambda p=path, r=runtime: _open(p, r, b.threads), lambda n: _batch(x, n), batches, timing,
                            energy_skipped="edgec build does not measure energy; run `edgec bench --energy auto`")
        entry["inputs"] = [{"name": "input", "shape": list(x.shape[1:]), "dtype": "float32", "source": "test split"}]
        results[name] = entry
        lat, thr = entry["latency"]["1"]["host"], entry["latency"][str(b.batch_size)]["host"]
        say(f"  {name:<18} {runtime:<12} p50 {lat['p50']:.3f} ms  p99 {lat['p99']:.3f} ms  cv {lat['cv']:.1%}  "
            f"batch {b.batch_size}: {thr['throughput']:,.0f}/s")
    work.metrics["models"] = {
        k: {"latency_ms": {q: v["latency"]["1"]["host"][q] for q in ("p50", "p90", "p99")},
            "throughput_per_s": v["latency"][str(b.batch_size)]["host"]["throughput"], "cv": v["latency"]["1"]["host"]["cv"]}
        for k, v in results.items()}
    settings = {**asdict(timing), "threads": b.threads, "batches": batches, "energy": "off", "runtime": "per model"}
    atomic_write_json(work.path / "bench.json", {"batch_size": b.batch_size, "device": "cpu", "machine": machine,
                                                 "machine_fingerprint": fingerprint, "warnings": warnings,
                                                 "settings": settings, "models": results})

"""Checking stages: ``verify`` (accuracy of every model through its runner) and ``bench`` (latency)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgec.artifacts import Artifact, StageWork
from edgec.atomic import atomic_write_json
from edgec.backends import BACKENDS, get_backend
from edgec.bench.results import describe_machine
from edgec.bench.run import Timing, bench_model
from edgec.compare import compare
from edgec.compress.int8_cpu import SAFE_EVERYWHERE
from edgec.compress.saturation import predict_avx2_logits, predict_saturation
from edgec.console import say
from edgec.errors import VerificationFailed
from edgec.stages.defs import Task

if TYPE_CHECKING:
    from edgec.build_context import BuildContext


def model_files(arts: dict[str, Artifact], task: Task) -> dict[str, tuple[Path, str, Artifact]]:
    """The models a build produced: report name -> (file, runtime, artifact holding its params/FLOPs).

    The task lists its models (:class:`edgec.stages.defs.ModelEntry`); each file is the model output its
    stage's def declares. An engine built from them is ``student_tensorrt`` (``model.plan``) or
    ``student_kernels`` (the student on edgec's CUDA kernels).
    """
    out = {}
    for m in task.models:
        art = next((arts[s] for s in m.stages if s in arts), None)
        if art is not None:
            size = next(arts[s] for s in m.size if s in arts)
            name = m.name.format_map(task.metrics(art))  # student_{kind}: int8 or lowbit
            out[name] = (task.stage(art.stage).outputs.model_file(art), m.runtime, size)
    student = arts.get("prune") or arts["distill"]
    engine = arts.get("engine")
    backend = get_backend(task.metrics(engine)["backend"]) if engine is not None else None
    student_file = task.stage(student.stage).outputs.model_file(student)
    own = backend.engine_model(engine, student_file) if backend is not None else None
    if own is not None:  # an engine with a model file of its own (TensorRT plan, the kernels' student)
        out[f"student_{backend.name}"] = (own, backend.name, student)
    return out


def built_models(ctx: BuildContext, work: StageWork) -> dict[str, tuple[Path, str]]:
    """The models among ``work``'s parents: name -> (file, runtime)."""
    assert ctx.task is not None
    files = model_files({a.stage: a for a in work.parents}, ctx.task)
    return {name: (path, runtime) for name, (path, runtime, _) in files.items()}


def _engine_options(ctx: BuildContext, runtime: str) -> dict:
    """Runner options the recipe's ``engine`` section sets for ``runtime`` (TensorRT's CUDA graph, the kernels' settings)."""
    return get_backend(runtime).runner_options(ctx.recipe.engine)


def engine_references() -> dict[str, tuple[str, ...]]:
    """An engine's model -> the models it is checked against (the first of them that was built)."""
    return {f"student_{b.name}": b.verify_against for _, b in BACKENDS.items() if b.verify_against}


def _verify_engine(logits: dict[str, np.ndarray], results: dict, v, metrics: dict) -> list[str]:
    """Engine vs reference on the test split by :func:`edgec.compare.compare` (Polygraphy's rule): every
    output within ``engine_atol + engine_rtol * |reference|``, top-1 agreement, accuracy drop. Returns the problems."""
    problems = []
    for name, refs in engine_references().items():
        ref = next((r for r in refs if r in logits), None)
        if name not in logits or ref is None:
            continue
        parity = compare(logits[ref], logits[name], atol=v.engine_atol, rtol=v.engine_rtol)
        outside = parity.outside_tolerance
        drop = results[ref]["accuracy"] - results[name]["accuracy"]
        metrics["engine"] = {"model": name, "reference": ref, **parity.to_dict(), "accuracy_drop": drop}
        say(f"  {name} vs {ref}: max |diff| {parity.max_abs_diff:.3g}, top-1 agreement "
            f"{parity.top1_agreement:.4f}, accuracy drop {drop * 100:+.2f} points")
        if outside > 0:
            problems.append(f"{name} vs {ref}: {outside:.2%} of outputs differ by more than verify.engine_atol "
                            f"{v.engine_atol} + verify.engine_rtol {v.engine_rtol} x |reference| "
                            f"(max |diff| {parity.max_abs_diff:.3g})")
        if parity.top1_agreement < v.min_engine_top1_agreement:
            problems.append(f"{name}/{ref} top-1 agreement {parity.top1_agreement:.4f} < "
                            f"verify.min_engine_top1_agreement {v.min_engine_top1_agreement}")
        if drop > v.max_engine_accuracy_drop:
            problems.append(f"{name} accuracy drop vs {ref} {drop * 100:.2f} points > "
                            f"verify.max_engine_accuracy_drop {v.max_engine_accuracy_drop * 100:.2f}")
    return problems


def int8_problems(preds: dict[str, np.ndarray], results: dict, v, metrics: dict) -> list[str]:
    """INT8 vs FP32 student: top-1 agreement and accuracy drop into ``metrics``; the tolerance breaches."""
    if "student_int8" not in preds:
        return []
    problems = []
    agreement = float((preds["student_int8"] == preds["student_fp32_onnx"]).mean())
    drop = results["student_fp32_onnx"]["accuracy"] - results["student_int8"]["accuracy"]
    metrics.update(int8_top1_agreement=agreement, int8_accuracy_drop=drop)
    say(f"  INT8 vs FP32: top-1 agreement {agreement:.4f}, accuracy drop {drop * 100:+.2f} points")
    if drop > v.max_int8_accuracy_drop:
        problems.append(f"INT8 accuracy drop {drop * 100:.2f} points > verify.max_int8_accuracy_drop "
                        f"{v.max_int8_accuracy_drop * 100:.2f}")
    if agreement < v.min_int8_top1_agreement:
        problems.append(f"INT8/FP32 top-1 agreement {agreement:.4f} < verify.min_int8_top1_agreement "
                        f"{v.min_int8_top1_agreement}")
    return problems


AVX2_PREDICTION_SAMPLES = 512  # test images the end-to-end AVX2 prediction runs on (it re-runs the model per layer)


def int8_saturation(task: Task, work: StageWork, x: np.ndarray, metrics: dict,
                    y: np.ndarray | None = None) -> list[str]:
    """Predict, by emulating VPMADDUBSW (:mod:`edgec.compress.saturation`), whether each PTQ INT8 file
    saturates ONNX Runtime on an x86 CPU without VNNI; into ``metrics["avx2_saturation"]``. A problem
    only when the ONNX Runtime CPU file has a flavour meant to be safe on every CPU and still saturates."""
    q = next((a for a in work.parents if a.stage == "quantize"), None)
    if q is None or task.metrics(q)["kind"] != "int8":
        return []
    problems, found = [], {}
    qm = task.metrics(q)
    files = qm.get("files") or {qm["file"]: {"flavour": "s8s8", "runtime": "qat"}}  # one S8S8 file
    for name, desc in files.items():
        pred = predict_saturation(q.file(name), x)
        found[name] = {"flavour": desc["flavour"], "saturates": pred["saturates"],
                       "max_saturated_fraction": pred["max_saturated_fraction"], "samples": pred["samples"],
                       "layers": [{k: lay[k] for k in ("node", "saturated_fraction", "output_error")}
                                  for lay in pred["layers"]]}
        if y is not None and pred["saturates"]:  # what an x86 CPU without VNNI would score (predicted)
            n = AVX2_PREDICTION_SAMPLES
            logits = predict_avx2_logits(q.file(name), x[:n])
            found[name].update(avx2_predicted_accuracy=float((logits.argmax(1) == y[:n]).mean()),
                               avx2_predicted_on=int(len(y[:n])))
        worst = max(pred["layers"], key=lambda lay: lay["output_error"] or 0, default=None)
        say(f"  {name:<20} {desc['flavour']:<13} on x86 without VNNI: "
            + (f"saturates ({pred['max_saturated_fraction']:.2%} of pairs at worst; {worst['node']} output error "
               f"{worst['output_error']:.1%}; predicted accuracy {found[name].get('avx2_predicted_accuracy', float('nan')):.4f})"
               if pred["saturates"] else "no saturation"))
        if pred["saturates"] and desc["flavour"] in SAFE_EVERYWHERE and desc.get("runtime") == "onnxruntime-cpu":
            problems.append(f"{name} ({desc['flavour']}) is predicted to saturate on x86 CPUs without VNNI")
    metrics["avx2_saturation"] = found
    return problems


def verify(ctx: BuildContext, work: StageWork) -> None:
    """Accuracy of every model on the test split, and INT8-vs-FP32 top-1 agreement; fail beyond tolerance.

    Written once for every task: the task's inputs (:mod:`edgec.stages.inputs`) feed each model.
    """
    assert ctx.task is not None
    test, v = ctx.dataset.test, ctx.recipe.verify
    inputs = ctx.task.inputs(ctx, work)
    preds: dict[str, np.ndarray] = {}
    logits: dict[str, np.ndarray] = {}
    results = {}
    for name, (path, runtime) in built_models(ctx, work).items():
        logits[name] = inputs.test_logits(name, path, runtime, **_engine_options(ctx, runtime))
        preds[name] = logits[name].argmax(axis=1)
        acc = float((preds[name] == test.y).mean())
        results[name] = {"accuracy": acc, "runtime": runtime, "n": int(len(test.y))}
        say(f"  {name:<18} {runtime:<12} accuracy {acc:.4f} on {len(test.y)} test {inputs.unit}")
    work.metrics["models"] = results
    problems = []
    if "student_lowbit" in preds:  # low-bit weights cost accuracy by design: reported, not gated
        work.metrics["lowbit_accuracy_drop"] = (results["student_fp32_onnx"]["accuracy"]
                                                - results["student_lowbit"]["accuracy"])
    problems += int8_problems(preds, results, v, work.metrics)
    if inputs.images is not None:  # the saturation emulator runs image models
        problems += int8_saturation(ctx.task, work, inputs.images, work.metrics, test.y)
    problems += _verify_engine(logits, results, v, work.metrics)
    atomic_write_json(work.path / "verify.json", work.metrics)
    if problems:
        raise VerificationFailed("verification failed: " + "; ".join(problems), hint=ctx.task.verify_hint)


def bench(ctx: BuildContext, work: StageWork) -> None:
    """Latency at batch 1 and ``bench.batch_size`` for every model, by the code `edgec bench` runs.

    Writes ``bench.json``: the results-file fields of the run (machine, settings) and one results
    ``models`` entry per model; ``edgec.report`` merges it with params/FLOPs/accuracy into
    ``results.json`` (schema edgec.bench/1) for ``edgec gate``.
    """
    assert ctx.task is not None
    b = ctx.recipe.bench
    inputs = ctx.task.inputs(ctx, work)
    timing = Timing(warmup_runs=b.warmup_runs, warmup_s=b.warmup_s, min_runs=b.min_runs, min_duration_s=b.min_duration_s)
    batches = sorted({1, b.batch_size})
    results = {}
    for name, (path, runtime) in built_models(ctx, work).items():
        entry = bench_model(lambda m=name, p=path, r=runtime: inputs.open(m, p, r, b.threads, **_engine_options(ctx, r)),
                            lambda n, m=name: inputs.feed(m, n), batches, timing,
                            energy_skipped="edgec build does not measure energy; run `edgec bench --energy auto`")
        entry["inputs"] = inputs.describe(name)
        results[name] = entry
    write_bench(ctx, work, results, timing, batches)


def write_bench(ctx: BuildContext, work: StageWork, results: dict, timing, batches: list[int]) -> None:
    """Print each model's latency line; put the summary in the metrics and the results into ``bench.json``."""
    from dataclasses import asdict

    b = ctx.recipe.bench
    machine, fingerprint, warnings = describe_machine("cpu")
    for name, entry in results.items():
        lat, thr = entry["latency"]["1"]["host"], entry["latency"][str(b.batch_size)]["host"]
        say(f"  {name:<18} {entry['runtime']:<12} p50 {lat['p50']:.3f} ms  p99 {lat['p99']:.3f} ms  cv {lat['cv']:.1%}  "
            f"batch {b.batch_size}: {thr['throughput']:,.0f}/s")
    work.metrics["models"] = {
        k: {"latency_ms": {q: v["latency"]["1"]["host"][q] for q in ("p50", "p90", "p99")},
            "throughput_per_s": v["latency"][str(b.batch_size)]["host"]["throughput"], "cv": v["latency"]["1"]["host"]["cv"]}
        for k, v in results.items()}
    settings = {**asdict(timing), "threads": b.threads, "batches": batches, "energy": "off", "runtime": "per model"}
    atomic_write_json(work.path / "bench.json", {"batch_size": b.batch_size, "device": "cpu", "machine": machine,
                                                 "machine_fingerprint": fingerprint, "warnings": warnings,
                                                 "settings": settings, "models": results})

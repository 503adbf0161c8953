"""The build report: ``report.json`` (for scripts and CI), ``report.md`` (for people), ``report.png``.

``report.json`` has (at least) this shape, which is a public contract::

    {"edgec_version": "0.1.0", "recipe": {...},
     "models": {"teacher" | "student" | "student_fp32_onnx" | "student_int8":
                 {"params", "flops", "accuracy", "latency_ms": {"p50", "p90", "p99"}, "runtime", "file", ...}},
     "artifacts": {"teacher": "runs/digits/teacher-<key>", ...}, ...}

Accuracy is a fraction of the test split; latency is at batch 1 in milliseconds (host wall clock).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from edgec import __version__
from edgec.artifacts import Artifact
from edgec.atomic import atomic_path, atomic_write_json, atomic_write_text
from edgec.backends import get_backend
from edgec.bench.results import write_build_results
from edgec.deploy import write_deploy
from edgec.stages.check import model_files

if TYPE_CHECKING:
    from edgec.build_context import BuildContext


def collect(ctx: BuildContext, arts: dict[str, Artifact]) -> dict[str, Any]:
    """Assemble ``report.json``'s content from the artifacts' manifests."""
    assert ctx.task is not None
    metrics = ctx.task.metrics  # each stage's metrics, by the keys its stage def declares
    verify = metrics(arts["verify"])
    bench = metrics(arts["bench"])["models"] if "bench" in arts else {}
    files = model_files(arts, ctx.task)
    models: dict[str, Any] = {}
    for name, vres in verify["models"].items():
        path, _, size_art = files[name]
        size = metrics(size_art)
        models[name] = {
            "params": size["params"], "flops": size["flops"], "accuracy": vres["accuracy"],
            "latency_ms": bench.get(name, {}).get("latency_ms"),
            "throughput_per_s": bench.get(name, {}).get("throughput_per_s"),
            "runtime": vres["runtime"], "file": str(path), "bytes": path.stat().st_size,
            **{k: size[k] for k in ("params_detail", "flops_at") if k in size},  # text models
        }
    summary: dict[str, Any] = {
        "param_reduction": models["teacher"]["params"] / models["student"]["params"],
        "flop_reduction": models["teacher"]["flops"] / max(models["student"]["flops"], 1),
    }
    if "params_detail" in models["teacher"]:  # text: embedding tables dominate small models, so give both
        summary["param_reduction_without_embeddings"] = (models["teacher"]["params_detail"]["without_embeddings"]
                                                         / models["student"]["params_detail"]["without_embeddings"])
    if "prune" in arts:
        pr = metrics(arts["prune"])["prune"]
        summary["prune"] = {k: pr.get(k) for k in ("criterion", "flops_ratio", "params_ratio")}
    if "student_int8" in models:
        summary["int8_accuracy_drop"] = verify["int8_accuracy_drop"]
        summary["int8_top1_agreement"] = verify["int8_top1_agreement"]
    q = metrics(arts["quantize"]) if "quantize" in arts else None
    if q is not None and q.get("files"):  # PTQ: each INT8 file's flavour, float layers, val accuracy steps
        sat = verify.get("avx2_saturation") or {}
        summary["int8_files"] = {
            name: {"flavour": d["flavour"], "runtime": d["runtime"], "float_layers": d["float_layers"],
                   "fp32_val_accuracy": d["fp32_val_accuracy"],
                   "val_accuracy_steps": [{"float_layers": st["float_layers"], "val_accuracy": st["val_accuracy"]}
                                          for st in d["steps"]],
                   "avx2_saturates": (sat.get(name) or {}).get("saturates"),
                   "avx2_predicted_accuracy": (sat.get(name) or {}).get("avx2_predicted_accuracy")}
            for name, d in q["files"].items()}
        cpu = q["files"].get(q.get("file"))
        if cpu is not None and "student_int8" in models:  # results.json: `edgec gate` compares bytes only when equal
            models["student_int8"]["quantization"] = {"flavour": cpu["flavour"], "float_layers": cpu["float_layers"]}
    if "student_lowbit" in models:
        summary["lowbit_accuracy_drop"] = verify["lowbit_accuracy_drop"]
        summary["lowbit_bits"] = metrics(arts["quantize"])["bits"]
    for kind in ("int8", "lowbit"):
        if f"student_{kind}" in models and bench:
            summary[f"{kind}_onnx_speedup_vs_teacher_torch"] = (
                bench["teacher"]["latency_ms"]["p50"] / bench[f"student_{kind}"]["latency_ms"]["p50"])
    return {
        "edgec_version": __version__,
        "recipe": ctx.recipe.model_dump(mode="json"),
        "dataset": ctx.dataset.describe(),
        "models": models,
        "summary": summary,
        "parity": metrics(arts["export"]).get("parity"),
        "engine": _engine_section(arts["engine"].metrics),
        "engine_verify": verify.get("engine"),
        "artifacts": {stage: str(a.path) for stage, a in arts.items()},
        "stages": {"reused": ctx.reused, "ran": ctx.ran},
    }


def _fmt(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md``: a models table, the headline ratios and the plot."""
    r, s = report["recipe"], report["summary"]
    lines = [f"# edgec build report: {r['name']}", "",
             f"edgec {report['edgec_version']} · data: {report['dataset']['name']} "
             f"({report['dataset'].get('sizes', '')}) · engine: {report['engine']['backend']}", "",
             "| model | runtime | params | MACs | size | accuracy | p50 ms | p90 ms | p99 ms | throughput/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in report["models"].items():
        lat = m["latency_ms"] or {}
        lines.append(f"| {name} | {m['runtime']} | {m['params']:,} | {m['flops']:,} | {m['bytes'] / 1024:.1f} KiB | "
                     f"{m['accuracy']:.4f} | {_fmt(lat.get('p50'), '.3f')} | {_fmt(lat.get('p90'), '.3f')} | "
                     f"{_fmt(lat.get('p99'), '.3f')} | {_fmt(m['throughput_per_s'], ',.0f')} |")
    lines += ["", f"- student has **{s['param_reduction']:.1f}x fewer parameters** and "
                  f"{s['flop_reduction']:.1f}x fewer MACs than the teacher"]
    if "int8_accuracy_drop" in s:
        lines.append(f"- INT8 vs FP32 student: accuracy drop {s['int8_accuracy_drop'] * 100:+.2f} points, "
                     f"top-1 agreement {s['int8_top1_agreement']:.4f}")
    for name, f in (s.get("int8_files") or {}).items():
        steps = " -> ".join(f"{st['val_accuracy']:.4f}" for st in f["val_accuracy_steps"])
        sat = {True: "saturates", False: "no saturation", None: "not checked"}[f["avx2_saturates"]]
        if f.get("avx2_predicted_accuracy") is not None:
            sat += f" (predicted test accuracy {f['avx2_predicted_accuracy']:.4f})"
        lines.append(f"- `{name}` ({f['flavour']}, {f['runtime']}): validation accuracy FP32 "
                     f"{_fmt(f['fp32_val_accuracy'], '.4f')}, INT8 {steps}; layers kept in float: "
                     f"{', '.join(f['float_layers']) or 'none'}; x86 without VNNI (emulated): {sat}")
    if "prune" in s:
        lines.append(f"- pruned ({s['prune']['criterion']}): {s['prune']['flops_ratio']:.2f} of the FLOPs and "
                     f"{s['prune']['params_ratio']:.2f} of the parameters of the distilled student kept")
    if "lowbit_accuracy_drop" in s:
        lines.append(f"- {s['lowbit_bits']}-bit student vs FP32: accuracy drop {s['lowbit_accuracy_drop'] * 100:+.2f} points")
    if "param_reduction_without_embeddings" in s:
        lines.append(f"- without embedding tables: {s['param_reduction_without_embeddings']:.1f}x fewer parameters")
    if "int8_onnx_speedup_vs_teacher_torch" in s:
        lines.append(f"- INT8 student (ONNX Runtime) is **{s['int8_onnx_speedup_vs_teacher_torch']:.1f}x faster** "
                     "than the FP32 teacher (torch) at batch 1 (p50, host wall clock)")
    lines += _engine_lines(report)
    lines += ["", "Latency: batch 1, host end-to-end wall clock; throughput at the recipe's bench batch size.", ""]
    if any(m["latency_ms"] for m in report["models"].values()):
        lines += ["![accuracy vs latency vs size](report.png)", ""]
    lines += ["Deployable files: `deploy/` (see deploy.json).", ""]
    return "\n".join(lines)


def _engine_section(metrics: dict[str, Any]) -> dict[str, Any]:
    """report.json's ``engine``: what ran, and what its backend says about what it built."""
    keys = ("backend", "model", "runner", *get_backend(metrics["backend"]).report_keys)
    return {k: metrics[k] for k in keys if k in metrics}


def _engine_lines(report: dict[str, Any]) -> list[str]:
    """The engine (TensorRT, kernels): what was built, per-layer precision, agreement with its source."""
    e = report["engine"]
    lines = get_backend(e["backend"]).report_lines(e)
    v = report.get("engine_verify")
    if v:
        lines.append(f"- {v['model']} vs {v['reference']}: max |diff| {v['max_abs_diff']:.3g}, top-1 agreement "
                     f"{v['top1_agreement']:.4f}, accuracy drop {v['accuracy_drop'] * 100:+.2f} points")
    return lines


def render_plot(report: dict[str, Any]) -> bytes:
    """PNG: accuracy against batch-1 p50 latency (log scale); marker area grows with file size."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    biggest = max(m["bytes"] for m in report["models"].values())
    for name, m in report["models"].items():
        if not m["latency_ms"]:
            continue
        area = 60 + 600 * (m["bytes"] / biggest) ** 0.5  # sqrt: small models stay visible
        ax.scatter([m["latency_ms"]["p50"]], [m["accuracy"] * 100], s=area, alpha=0.7, edgecolors="black",
                   label=f"{name} ({m['runtime']}): {m['params']:,} params, {m['bytes'] / 1024:.0f} KiB")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.3, y=0.3)
    ax.set_xlabel("latency p50 at batch 1 (ms, log scale; left is faster)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{report['recipe']['name']}: accuracy vs latency (marker area ~ file size)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=8, frameon=False, markerscale=0.5)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_report(ctx: BuildContext, arts: dict[str, Artifact]) -> dict[str, Any]:
    """Write ``deploy/``, ``report.json``, ``report.md``, ``report.png`` and ``results.json`` (the
    edgec.bench/1 results file that ``edgec gate`` compares) into the run folder."""
    out = ctx.store.root
    report = collect(ctx, arts)
    report["deploy"] = write_deploy(out, arts, ctx.dataset, ctx.recipe.name, ctx.task)
    if any(m["latency_ms"] for m in report["models"].values()):
        with atomic_path(out / "report.png") as tmp:
            tmp.write_bytes(render_plot(report))
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", render_markdown(report))
    write_build_results(out, report, arts)
    return report

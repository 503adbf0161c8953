"""Check the VPMADDUBSW saturation emulator against a real x86 CPU without VNNI.

edgec predicts, on any machine, what an INT8 QDQ file scores in ONNX Runtime on an AVX2-only CPU
(:mod:`edgec.compress.saturation`; verify prints it). That prediction is only worth something if it
matches such a CPU. Run this *on an AVX2-only machine* (no ``avx512_vnni``/``avx_vnni`` in
/proc/cpuinfo) against finished builds: for every INT8 file of each build it measures ONNX Runtime's
real accuracy and logits on the test split and compares them with the emulator's predicted ones.

    python benchmarks/avx2_emulation_check.py runs/digits runs/digits-seed1 --out benchmarks/results/avx2_emulation.json

On a VNNI machine it refuses (ONNX Runtime would not saturate there, so nothing would be checked).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from edgec.build_context import BuildContext
from edgec.compress.saturation import predict_avx2_logits, predict_saturation
from edgec.recipe import parse_recipe
from edgec.stages import task_for

SAMPLES = 512


def cpu_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    return sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni"})


def cpu_model() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
                platform.processor())


def check_build(run: Path) -> list[dict]:
    report = json.loads((run / "report.json").read_text())
    data = dict(report["recipe"])
    if data.get("data", {}).get("name") != "sst2":
        data.pop("text", None)  # the dump holds every section; text is only valid for text data
    recipe = parse_recipe(data, source=str(run / "report.json"))
    ds = BuildContext(recipe, None, progress=False, force=False, task=task_for(recipe)).dataset
    x, y = ds.test.x[:SAMPLES], ds.test.y[:SAMPLES]
    deploy = run / "deploy"
    ref = ort.InferenceSession(str(deploy / "model.onnx"), providers=["CPUExecutionProvider"])
    fp32_logits = ref.run(None, {ref.get_inputs()[0].name: x})[0]
    rows = []
    for f in sorted(deploy.glob("model.int8*.onnx")):
        sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
        real = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        predicted = predict_avx2_logits(f, x)
        sat = predict_saturation(f, x)
        scale = float(np.abs(real).mean()) or 1.0
        rows.append({
            "build": run.name, "file": f.name, "samples": int(len(y)),
            "fp32_accuracy": float((fp32_logits.argmax(1) == y).mean()),
            "ort_accuracy_this_cpu": float((real.argmax(1) == y).mean()),
            "emulated_accuracy": float((predicted.argmax(1) == y).mean()),
            "emulator_predicts_saturation": bool(sat["saturates"]),
            "top1_agreement_emulated_vs_real": float((predicted.argmax(1) == real.argmax(1)).mean()),
            "mean_abs_logit_diff_rel": float(np.abs(predicted - real).mean() / scale),
            "fp32_vs_real_top1_agreement": float((fp32_logits.argmax(1) == real.argmax(1)).mean()),
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished build folders (edgec build --out DIR)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/avx2_emulation.json"))
    args = ap.parse_args()
    flags = cpu_flags()
    if "avx512_vnni" in flags or "avx_vnni" in flags or "avx2" not in flags:
        raise SystemExit(f"this CPU has {flags}: run this on an x86 CPU with AVX2 and without VNNI")
    rows = [r for run in args.runs for r in check_build(run)]
    table = Table(title=f"Saturation emulator vs ONNX Runtime {ort.__version__} on {cpu_model()} ({', '.join(flags)})")
    for col in ("build", "file", "FP32", "ORT here", "emulated", "saturates?", "top-1 emul=real", "|diff|/|logit|"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["build"], r["file"], f"{r['fp32_accuracy']:.4f}", f"{r['ort_accuracy_this_cpu']:.4f}",
                      f"{r['emulated_accuracy']:.4f}", str(r["emulator_predicts_saturation"]),
                      f"{r['top1_agreement_emulated_vs_real']:.4f}", f"{r['mean_abs_logit_diff_rel']:.4f}")
    Console(width=200).print(table)
    out = {"benchmark": "avx2_emulation_check", "machine": {"cpu": cpu_model(), "flags": flags,
                                                             "onnxruntime": ort.__version__},
           "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

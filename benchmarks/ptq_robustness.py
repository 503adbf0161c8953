"""Benchmark: does post-training INT8 hold on every seed, not one lucky trajectory? (issue 12, item 4)

Builds the default recipe (``digits``) with seeds 0-4, and ``mnist`` too when ``--data`` names an MNIST
folder, each in a fresh folder in its own ``edgec build`` process (benchmarking off: this is about
accuracy). For each build it reads ``report.json`` and the quantize stage's manifest and prints one row:

    recipe  seed  exit  teacher  student FP32  INT8 (test)  drop (points)  layers kept in float  INT8 files

then the spread over seeds (mean, standard deviation, min/max of each accuracy and of the INT8 drop), which is
what `.ci/run`'s accuracy tolerance is derived from. A build that fails (exit != 0) is a row with its error,
never dropped.

Usage:
    python benchmarks/ptq_robustness.py [--seeds 0,1,2,3,4] [--data ../shared/data/mnist]
                                        [--out benchmarks/results/ptq_robustness.json] [--jobs N] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml


def cpu_model() -> str:
    """The CPU's model name and INT8 instruction set, as edgec records them."""
    from edgec.bench.machine import cpu_info

    return cpu_info()["model"] or platform.machine()


def cpu_flags() -> list[str]:
    """The INT8-relevant instruction-set flags of this CPU (Linux /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})


def recipe_with_seed(recipe: str, seed: int, data: Path | None, folder: Path, device: str | None = None) -> Path:
    """A copy of the built-in ``recipe`` with ``seed`` and benchmarking off (and ``train.device`` when
    given), written into ``folder``."""
    from edgec.recipe import recipe_text

    text, _ = recipe_text(recipe)
    doc = yaml.safe_load(text)
    doc["seed"] = seed
    doc["bench"] = {**(doc.get("bench") or {}), "enabled": False}
    if data is not None:
        doc.setdefault("data", {})["path"] = str(data.resolve())
    if device is not None:
        doc["train"] = {**(doc.get("train") or {}), "device": device}
    path = folder / f"{recipe}-seed{seed}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _stage_metrics(run: Path, stage: str) -> dict:
    """The metrics of the finished ``stage`` folder in ``run`` ({} when there is none)."""
    for folder in sorted(run.glob(f"{stage}-*")):
        if folder.is_dir() and not folder.name.endswith(".work") and (folder / "manifest.json").is_file():
            return json.loads((folder / "manifest.json").read_text()).get("metrics", {})
    return {}


def one_build(recipe: str, seed: int, data: Path | None, tmp: Path, device: str | None = None) -> dict:
    """Build ``recipe`` at ``seed`` in a fresh folder; the row for the table (failures included)."""
    run = tmp / f"{recipe}-{seed}"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgec", "build",
                           str(recipe_with_seed(recipe, seed, data, tmp, device)), "--out", str(run), "--quiet"],
                          capture_output=True, text=True)
    row: dict = {"recipe": recipe, "seed": seed, "exit": proc.returncode, "seconds": time.perf_counter() - t0}
    q = _stage_metrics(run, "quantize")
    control = q.get("accuracy_control") or {}
    row["float_layers"] = control.get("float_layers", q.get("float_layers", []))
    row["accuracy_control"] = control
    row["int8_files"] = q.get("files") or q.get("flavours") or ({"tensorrt": q["file"]} if "file" in q else {})
    verify = _stage_metrics(run, "verify")
    # What an x86 CPU without VNNI would do with each INT8 file (VPMADDUBSW emulation, edgec.compress.saturation)
    row["avx2"] = {name: {k: s.get(k) for k in ("flavour", "saturates", "max_saturated_fraction",
                                                 "avx2_predicted_accuracy")}
                   for name, s in (verify.get("avx2_saturation") or {}).items()}
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        row["error"] = lines[-1] if lines else f"exit {proc.returncode}"
        models = verify.get("models", {})
    else:
        models = json.loads((run / "report.json").read_text())["models"]
    for name in ("teacher", "student", "student_fp32_onnx", "student_int8"):
        if name in models:
            row[name] = models[name]["accuracy"]
    if "student_fp32_onnx" in row and "student_int8" in row:
        row["int8_drop_points"] = (row["student_fp32_onnx"] - row["student_int8"]) * 100
    return row


def spread(rows: list[dict], key: str) -> dict | None:
    """Mean, sample standard deviation, min and max of ``key`` over the rows that have it."""
    values = [r[key] for r in rows if key in r]
    if not values:
        return None
    return {"n": len(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values)}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}"


def _avx2(files: dict) -> str:
    """Each INT8 file's flavour and whether it saturates without VNNI (predicted accuracy when it does)."""
    parts = []
    for s in files.values():
        verdict = "saturates" if s.get("saturates") else "ok"
        if s.get("avx2_predicted_accuracy") is not None:
            verdict += f" ({s['avx2_predicted_accuracy'] * 100:.2f}%)"
        parts.append(f"{s.get('flavour')}: {verdict}")
    return "; ".join(parts) or "-"


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    out = ["| recipe | seed | exit | teacher | student FP32 (ORT) | INT8 | drop (pt) | kept in float "
           "| x86 without VNNI (emulated) | s |",
           "|---|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    for r in rows:
        drop = "-" if "int8_drop_points" not in r else f"{r['int8_drop_points']:+.2f}"
        kept = ", ".join(r["float_layers"]) or "none"
        out.append(f"| {r['recipe']} | {r['seed']} | {r['exit']} | {_pct(r.get('teacher'))} | "
                   f"{_pct(r.get('student_fp32_onnx'))} | {_pct(r.get('student_int8'))} | {drop} | {kept} | "
                   f"{_avx2(r.get('avx2') or {})} | {r['seconds']:.0f} |")
        if "error" in r:
            out.append(f"| | | | error: {r['error'][:200]} | | | | | | |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--data", type=Path, default=None, help="MNIST folder: also run the `mnist` recipe")
    ap.add_argument("--recipes", default=None, help="comma-separated built-in recipes (default: digits[,mnist])")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ptq_robustness.json")
    ap.add_argument("--device", default=None, help="train.device for every build (default: the recipe's, auto)")
    ap.add_argument("--jobs", type=int, default=1, help="builds at once (1 on a 2-core machine)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    recipes = args.recipes.split(",") if args.recipes else ["digits"] + (["mnist"] if args.data else [])

    jobs = [(recipe, seed) for recipe in recipes for seed in seeds]
    with tempfile.TemporaryDirectory(prefix="edgec-ptq-") as tmp, ThreadPoolExecutor(max(1, args.jobs)) as pool:
        def run(job: tuple[str, int]) -> dict:
            recipe, seed = job
            row = one_build(recipe, seed, args.data if recipe != "digits" else None, Path(tmp), args.device)
            print(f"{recipe} seed {seed}: exit {row['exit']}, INT8 drop "
                  f"{row.get('int8_drop_points', float('nan')):+.2f} points, float layers "
                  f"{row['float_layers'] or 'none'} ({row['seconds']:.0f} s)", flush=True)
            return row

        rows = list(pool.map(run, jobs))
    summary = {recipe: {key: spread([r for r in rows if r["recipe"] == recipe], key)
                        for key in ("teacher", "student_fp32_onnx", "student_int8", "int8_drop_points")}
               for recipe in recipes}
    print(f"\nPTQ robustness: {cpu_model()} ({', '.join(cpu_flags()) or 'flags unknown'}), {os.cpu_count()} cores\n")
    print(table(rows))
    print("\n| recipe | metric | mean | std | min | max |\n|---|---|---:|---:|---:|---:|")
    for recipe, metrics in summary.items():
        for key, s in metrics.items():
            if s:
                scale = 1 if key == "int8_drop_points" else 100
                print(f"| {recipe} | {key} | {s['mean'] * scale:.2f} | {s['std'] * scale:.2f} | "
                      f"{s['min'] * scale:.2f} | {s['max'] * scale:.2f} |")
    failed = [r for r in rows if r["exit"] != 0]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} builds passed verification")
    result = {"benchmark": "ptq_robustness", "machine": {"cpu": cpu_model(), "flags": cpu_flags(),
                                                          "cores": os.cpu_count(), "platform": platform.platform()},
              "rows": rows, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

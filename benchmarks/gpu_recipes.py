"""Benchmark: every built-in image recipe builds on a GPU with ``train.device: cuda`` (issue 12, item 5).

Builds, each in a fresh folder and its own ``edgec build`` process (several at once with ``--jobs``):

- without ``--data``: ``digits`` (the default recipe) and three variants of it that train quantized on
  the digits: ``digits-qat`` (INT8 QAT), ``digits-binaryconnect`` (1-bit weights, on edgec's CUDA
  kernels: the build that failed on an H200 in issue 12) and ``digits-stochastic-rounding`` (2-bit);
- with ``--data MNIST_FOLDER`` also ``mnist``, ``mnist-fitnet``, ``mnist-taylor`` (pruning),
  ``mnist-binary`` (BinaryConnect), and ``mnist-qat`` / ``mnist-stochastic-rounding`` (``mnist-binary``
  with ``quantize.method`` qat / stochastic_rounding 2-bit).

Benchmarking is off (this is about building and verifying). The recipes keep their own epochs
(training is seconds on a GPU; export, calibration, engines and verification dominate);
``--max-epochs N`` caps every training stage's epochs when time is short (fewer epochs can fail
INT8 verification for reasons that have nothing to do with the GPU). ``--jobs`` builds run at once,
each on cores/jobs CPU threads; a build past ``--build-timeout`` is stopped. Prints a table
(recipe, device the student trained on, engine backend, teacher / student / INT8-or-low-bit /
engine test accuracy, verify pass/fail, seconds) and writes JSON to ``--out`` after every build
(a session that ends early keeps what finished).

On a GPU machine (~4 minutes on an H200 with 16 cores, from the repository root)::

    python benchmarks/gpu_recipes.py --data ../shared/data/mnist --out gpu_recipes.json

The CPU path (for a check without a GPU): ``--device cpu --recipes digits --max-epochs 1``.
Exit status: 0 when every build passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import yaml

try:  # run as a script: benchmarks/ is on sys.path; imported from the repository root: the package
    from ptq_robustness import _stage_metrics
except ImportError:
    from benchmarks.ptq_robustness import _stage_metrics

from edgec.atomic import atomic_write_json

QAT = {"method": "qat", "bits": None}
SR2 = {"method": "stochastic_rounding", "bits": 2}
BC1 = {"method": "binaryconnect", "bits": 1}
# name -> (built-in recipe, quantize changes or None); variants cover every quantize.method on a GPU.
DIGITS = {"digits": ("digits", None), "digits-qat": ("digits", QAT),
          "digits-binaryconnect": ("digits", BC1), "digits-stochastic-rounding": ("digits", SR2)}
# The build that failed on an H200 (issue 12): BinaryConnect digits on edgec's CUDA kernels.
ENGINE = {"digits-binaryconnect": "kernels"}
MNIST = {"mnist": ("mnist", None), "mnist-fitnet": ("mnist-fitnet", None), "mnist-taylor": ("mnist-taylor", None),
         "mnist-binary": ("mnist-binary", None), "mnist-qat": ("mnist-binary", QAT),
         "mnist-stochastic-rounding": ("mnist-binary", SR2)}
TRAIN_SECTIONS = (("teacher", "train"), ("distill", "train"), ("prune", "train"), ("quantize", "train"))


def variant(name: str, base: str, quantize: dict | None, *, device: str, data: Path | None,
            max_epochs: int, backend: str | None, folder: Path) -> Path:
    """Write the recipe ``name``: built-in ``base`` with ``quantize`` merged in, ``train.device``,
    benchmarking off, epochs capped at ``max_epochs`` (0: unchanged), ``--data`` and ``engine.backend``."""
    from edgec.configs import QUANTIZE_CLASSES
    from edgec.recipe import parse_recipe, recipe_text

    doc = yaml.safe_load(recipe_text(base)[0])
    doc["name"] = name
    doc["train"] = {"device": device}
    doc["bench"] = {"enabled": False}
    if quantize:  # merged over the base's quantize section; bits None = left out (INT8)
        merged = {**(doc.get("quantize") or {}), **quantize}
        fields = QUANTIZE_CLASSES[merged.get("method", "ptq")].model_fields  # each method has its own fields
        doc["quantize"] = {k: v for k, v in merged.items() if v is not None and k in fields}
    if max_epochs:
        defaults = parse_recipe(doc, source=name)  # every stage's optimiser settings, defaults filled in
        for section, key in TRAIN_SECTIONS:
            has_train = hasattr(getattr(defaults, section), "train")  # PTQ has no training
            if has_train and (section in doc or section == "quantize"):
                train = getattr(defaults, section).train.model_dump(mode="json")
                doc.setdefault(section, {})[key] = {**train, "epochs": min(train["epochs"], max_epochs)}
        params = (doc.get("distill") or {}).get("params") or {}
        if "hint_epochs" in params:  # FitNets: the hint stage is part of distill's epochs
            params["hint_epochs"] = max(1, min(int(params["hint_epochs"]), max_epochs // 2))
    if data is not None and (doc.get("data") or {}).get("name") == "mnist":
        doc["data"]["path"] = str(data.resolve())
    if backend or name in ENGINE:
        doc.setdefault("engine", {})["backend"] = backend or ENGINE[name]
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def one_build(name: str, recipe: Path, tmp: Path, threads: int, timeout: float) -> dict:
    """Build ``recipe`` in a fresh folder on ``threads`` CPU threads; its table row (failures included,
    with the last error lines; a build past ``timeout`` seconds is stopped and reported as exit 124)."""
    run = tmp / name
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    try:
        proc = subprocess.run([sys.executable, "-m", "edgec", "build", str(recipe), "--out", str(run), "--quiet"],
                              capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc = subprocess.CompletedProcess(exc.cmd, 124, "", f"timed out after {timeout:.0f} s")
    row: dict = {"recipe": name, "exit": proc.returncode, "seconds": round(time.perf_counter() - t0, 1)}
    row["device"] = _stage_metrics(run, "distill").get("device", "-")  # where the student trained
    verify = _stage_metrics(run, "verify")
    row["verify"] = "pass" if proc.returncode == 0 else f"fail (exit {proc.returncode})"
    models = verify.get("models", {})
    for key, model in (("teacher", "teacher"), ("student", "student_fp32_onnx"), ("int8", "student_int8"),
                       ("lowbit", "student_lowbit"), ("engine", "student_tensorrt"), ("engine", "student_kernels")):
        if model in models:
            row[key] = models[model]["accuracy"]
    quantize = _stage_metrics(run, "quantize")
    if quantize.get("verification"):
        row["quantize_parity"] = quantize["verification"]
    engine = _stage_metrics(run, "engine")
    row["backend"] = engine.get("backend", "-")
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        row["error"] = " | ".join(lines[-3:]) if lines else f"exit {proc.returncode}"
    return row


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}"


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    out = ["| recipe | device | backend | teacher | student FP32 | INT8 / low-bit | engine | verify | s |",
           "|---|---|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        quant = r.get("int8", r.get("lowbit"))
        out.append(f"| {r['recipe']} | {r['device']} | {r['backend']} | {_pct(r.get('teacher'))} | "
                   f"{_pct(r.get('student'))} | {_pct(quant)} | {_pct(r.get('engine'))} | {r['verify']} | "
                   f"{r['seconds']:.0f} |")
    out += [f"\n{r['recipe']}: exit {r['exit']}: {r['error'][:600]}" for r in rows if "error" in r]
    return "\n".join(out)


def gpu_name() -> str | None:
    """The first CUDA GPU's name as torch sees it (None without one)."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="MNIST folder: also build the mnist* recipes")
    ap.add_argument("--device", default="cuda", help="train.device for every build (default cuda)")
    ap.add_argument("--max-epochs", type=int, default=0, help="cap on every stage's epochs (default 0: the recipes')")
    ap.add_argument("--build-timeout", type=float, default=200, help="seconds one build may take (default 200)")
    ap.add_argument("--jobs", type=int, default=max(1, min(4, (os.cpu_count() or 2) // 4)),
                    help="builds at once (default: a quarter of the cores, at most 4)")
    ap.add_argument("--recipes", default=None, help=f"comma-separated subset of {', '.join([*DIGITS, *MNIST])}")
    ap.add_argument("--backend", default=None, help="engine.backend for every build (default: each recipe's)")
    ap.add_argument("--out", type=Path, default=Path("gpu_recipes.json"))
    args = ap.parse_args()
    choices = {**DIGITS, **(MNIST if args.data else {})}
    names = args.recipes.split(",") if args.recipes else list(choices)
    unknown = [n for n in names if n not in {**DIGITS, **MNIST}]
    if unknown or any(n in MNIST and not args.data for n in names):
        ap.error(f"unknown recipes {unknown}" if unknown else "the mnist* recipes need --data")

    t0 = time.perf_counter()
    threads = max(1, (os.cpu_count() or 2) // max(1, args.jobs))
    result = {"benchmark": "gpu_recipes", "device": args.device, "gpu": gpu_name(), "max_epochs": args.max_epochs,
              "jobs": args.jobs, "machine": {"cores": os.cpu_count(), "platform": platform.platform()}, "rows": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgec-gpu-recipes-") as tmp:
        folder = Path(tmp)
        recipes = {n: variant(n, *{**DIGITS, **MNIST}[n], device=args.device, data=args.data,
                              max_epochs=args.max_epochs, backend=args.backend, folder=folder) for n in names}
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [pool.submit(one_build, n, recipes[n], folder, threads, args.build_timeout) for n in names]
            for done in as_completed(futures):  # each row is printed and saved as soon as it is known
                row = done.result()
                result["rows"].append(row)
                atomic_write_json(args.out, result)
                print(f"{row['recipe']}: exit {row['exit']} on {row['device']} in {row['seconds']:.0f} s", flush=True)
    rows = sorted(result["rows"], key=lambda r: names.index(r["recipe"]))
    print(f"\nBuilt-in recipes with train.device: {args.device} on {gpu_name() or 'no GPU'} "
          f"({os.cpu_count()} cores), epochs: {f'at most {args.max_epochs}' if args.max_epochs else 'the recipes'}, "
          f"{args.jobs} at once, {time.perf_counter() - t0:.0f} s in all\n")
    print(table(rows))
    failed = [r for r in rows if r["exit"] != 0]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} builds passed verification")
    atomic_write_json(args.out, {**result, "rows": rows})
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

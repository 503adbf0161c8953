"""Benchmark: torchvision ResNet-18 and MobileNetV2 at 224x224 through `edgec quantize`, side by side (issue 14).

For each model, batch 1 and 8, in one process on this CPU (ONNX Runtime and torch both on ``--threads``
threads), latency of:

- FP32 torch eager, FP32 ONNX Runtime (``model.onnx`` as ``edgec quantize`` prepared it: BN folded),
- INT8 ONNX Runtime, every file ``edgec quantize`` wrote: ``model.int8.onnx`` (S8S8, the TensorRT file),
  ``model.int8.cpu.onnx`` (``--flavour auto`` on this CPU) and one ``model.int8.<flavour>.onnx`` per other
  CPU flavour,
- ONNX Runtime's own best static INT8 recipe: ``quant_pre_process`` (with its graph optimisation), then
  ``quantize_static`` in QDQ with QUInt8 activations, QInt8 per-channel weights and its defaults
  (min-max calibration, int32 biases), on the same calibration images.

Runs are interleaved (round-robin over every variant, ``--rounds`` rounds of a few calls each) so that
load from other processes hits every variant alike; the table reports medians of all samples
(:func:`edgec.bench.timing.latency_stats`). Each INT8 file's top-1 agreement with FP32 ONNX Runtime on
held-out images is reported too (random-init weights, so agreement rather than accuracy).

Weights: torchvision's architectures with random initialisation (no download here); the BatchNorm
running statistics are then re-estimated on the calibration images (forward passes in train mode),
so activations have a trained network's scale. Images: synthetic natural-ish RGB pictures (smooth
1/f noise plus coloured discs and bars), written as PNGs at 256x256 and read by ``edgec quantize``
(resize 256, centre crop 224, ImageNet normalisation).

Needs torchvision: run with ``/work/venv-vision/bin/python benchmarks/realistic.py``.

Usage:
    python benchmarks/realistic.py [--models resnet18,mobilenet_v2] [--batches 1,8] [--calib 32]
                                   [--rounds 12] [--threads 2] [--out benchmarks/results/realistic.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VARIANTS_INT8 = ("s8s8", "reduce_range", "u8s8", "u8u8", "u8s8_reduce_range")


def natural_images(n: int, size: int = 256, seed: int = 0) -> np.ndarray:
    """``n`` RGB uint8 (n, 3, size, size) pictures: 1/f ("pink") noise backgrounds plus discs and bars."""
    rng = np.random.default_rng(seed)
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    falloff = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / size)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, 3, size, size), np.uint8)
    for i in range(n):
        spectrum = falloff * np.exp(2j * np.pi * rng.random((3, size, size)))
        img = np.real(np.fft.ifft2(spectrum))
        img = (img - img.mean()) / (img.std() + 1e-8) * 0.18 + rng.uniform(0.3, 0.7, (3, 1, 1))
        for _ in range(rng.integers(2, 6)):
            colour = rng.random((3, 1, 1))
            if rng.random() < 0.5:
                cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(size // 12, size // 4))]
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            else:
                c, w = int(rng.integers(0, size)), int(rng.integers(size // 30, size // 8))
                mask = (np.abs(xx - c) < w) if rng.random() < 0.5 else (np.abs(yy - c) < w)
            img = np.where(mask, 0.7 * colour + 0.3 * img, img)
        out[i] = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return out


def build_model(name: str, x_calib: np.ndarray):
    """A torchvision model, random init, BN statistics re-estimated on ``x_calib`` (normalised floats)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(num_classes=1000)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the passes below
    model.train()
    with torch.no_grad():
        for i in range(0, len(x_calib), 8):
            model(torch.from_numpy(x_calib[i:i + 8]))
    return model.eval()


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_own_recipe(fp32: Path, out: Path, x_calib: np.ndarray) -> Path:
    """ONNX Runtime's documented best static INT8 for CPUs: pre-process (shape inference + its graph
    optimisation), QDQ, QUInt8 activations, QInt8 per-channel weights, its other defaults."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    from edgec.compress.calibrate import CalibrationReader

    pre = out.with_suffix(".pre.onnx")
    ort.set_default_logger_severity(3)
    quant_pre_process(str(fp32), str(pre))
    quantize_static(str(pre), str(out), CalibrationReader(x_calib, "input", 8), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    return out


def interleaved(fns: dict[str, object], batch: int, rounds: int, per_round: int) -> dict[str, object]:
    """Round-robin timing: every round times ``per_round`` calls of each variant (after a warm-up)."""
    from edgec.bench.timing import latency_stats, measure_latency

    samples: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        measure_latency(fn, warmup_runs=2, warmup_s=0.0, min_runs=1, min_duration_s=0.0)
    for r in range(rounds):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))  # alternate the order too
        for k in order:
            s = measure_latency(fns[k], batch_size=batch, warmup_runs=0, warmup_s=0.0, min_runs=per_round,
                                min_duration_s=0.0)
            samples[k] += s.samples_ms
    return {k: latency_stats(v, batch_size=batch) for k, v in samples.items()}


def bench_model(name: str, work: Path, args: argparse.Namespace, x_hold: np.ndarray) -> dict:
    import torch

    from edgec.data.imagefolder import Preprocess, list_images, preprocess_image
    from edgec.onnx_input import quantize_onnx

    pre = Preprocess(image_size=(224, 224), resize=256, channels=3,
                     mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    calib_dir = work / "calib"
    x_calib = np.stack([preprocess_image(p, pre) for p in list_images(calib_dir)])
    model = build_model(name, x_calib)
    fp32_src = work / f"{name}.onnx"
    torch.onnx.export(model, (torch.from_numpy(x_calib[:1]),), str(fp32_src), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    t0 = time.perf_counter()
    out = work / f"{name}-int8"
    doc = quantize_onnx(fp32_src, calib_dir, out, preprocess=pre, samples=args.calib,
                        flavours=("auto", *VARIANTS_INT8[1:]), progress=False)
    quantize_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ort_file = ort_own_recipe(out / "model.onnx", work / f"{name}.ort_own.onnx", x_calib)
    ort_quantize_s = time.perf_counter() - t0

    files = {"fp32 onnxruntime": out / "model.onnx", "ort own int8 (u8s8 qdq)": ort_file}
    for fname, e in doc["int8"].items():
        files[f"{fname} ({e['flavour']})"] = out / fname
    torch.set_num_threads(args.threads)
    sessions = {k: ort_session(p, args.threads) for k, p in files.items()}
    ref = sessions["fp32 onnxruntime"].run(None, {"input": x_hold})[0]
    agreement, sqnr = {}, {}
    for k, s in sessions.items():  # top-1 agreement is fragile on random-init logits; SQNR says more
        logits = s.run(None, {"input": x_hold})[0]
        agreement[k] = float((logits.argmax(1) == ref.argmax(1)).mean())
        sqnr[k] = float(10 * np.log10(np.sum(ref ** 2) / max(float(np.sum((logits - ref) ** 2)), 1e-30)))

    rows = []
    for batch in args.batches:
        x = np.ascontiguousarray(np.resize(x_hold, (batch, *x_hold.shape[1:])))
        xt = torch.from_numpy(x)
        fns = {"fp32 torch eager": lambda: model(xt)}
        fns.update({k: (lambda s=s: s.run(None, {"input": x})) for k, s in sessions.items()})
        with torch.inference_mode():
            stats = interleaved(fns, batch, args.rounds, 3 if batch == 1 else 1)
        base = stats["fp32 onnxruntime"].p50
        own = stats["ort own int8 (u8s8 qdq)"].p50
        for k, st in stats.items():
            rows.append({"model": name, "batch": batch, "variant": k, "p50_ms": st.p50, "mean_ms": st.mean,
                         "p90_ms": st.p90, "cv": st.cv, "runs": st.count,
                         "speedup_vs_fp32_ort": base / st.p50, "vs_ort_own": own / st.p50,
                         "top1_agreement_vs_fp32": agreement.get(k, 1.0 if k.startswith("fp32") else None),
                         "logits_sqnr_db_vs_fp32": sqnr.get(k),
                         "bytes": files[k].stat().st_size if k in files else None})
    return {"rows": rows, "quantize_s": quantize_s, "ort_own_quantize_s": ort_quantize_s,
            "deploy": {k: doc[k] for k in ("int8", "quantization", "recommended")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--calib", type=int, default=32, help="calibration images")
    parser.add_argument("--holdout", type=int, default=16, help="held-out images for top-1 agreement")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/realistic.json")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]

    import onnx
    import onnxruntime
    import torch
    import torchvision
    from rich.table import Table

    from edgec.atomic import atomic_write_json
    from edgec.compress.int8_cpu import choose_cpu_flavour, int8_isa
    from edgec.console import console
    from edgec.data.imagefolder import Preprocess, normalise_pixels, write_imagefolder
    from edgec.machine import cpu_info

    load_before = os.getloadavg()
    results, started = [], time.time()
    with tempfile.TemporaryDirectory(prefix="edgec-realistic-") as tmp:
        work = Path(tmp)
        imgs = natural_images(args.calib + args.holdout)
        write_imagefolder(imgs[:args.calib], np.zeros(args.calib, np.int64), work / "calib", class_names=["img"])
        pre = Preprocess(image_size=(224, 224), channels=3, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
        hold = normalise_pixels(imgs[args.calib:, :, 16:240, 16:240].copy(), pre)  # the same centre crop
        per_model = {}
        for name in args.models.split(","):
            console.print(f"[bold]{name}[/]: quantize + time", soft_wrap=True)
            per_model[name] = bench_model(name, work, args, hold)
            results += per_model[name]["rows"]

    cpu = cpu_info()
    table = Table(title=f"{cpu['model']} ({cpu['cores']} cores, {int8_isa(cpu)}), {args.threads} threads")
    for col in ("model", "batch", "variant", "p50 ms", "x FP32 ORT", "x ORT own", "top-1 agree", "SQNR dB", "cv"):
        table.add_column(col, justify="right" if col not in ("model", "variant") else "left")
    for r in results:
        table.add_row(r["model"], str(r["batch"]), r["variant"], f"{r['p50_ms']:.1f}", f"{r['speedup_vs_fp32_ort']:.2f}",
                      f"{r['vs_ort_own']:.2f}",
                      "" if r["top1_agreement_vs_fp32"] is None else f"{r['top1_agreement_vs_fp32']:.3f}",
                      "" if r["logits_sqnr_db_vs_fp32"] is None or r["variant"].startswith("fp32")
                      else f"{r['logits_sqnr_db_vs_fp32']:.1f}",
                      f"{r['cv'] * 100:.0f}%")
    console.print(table, width=max(console.width, 140))

    def p50(model: str, batch: int, prefix: str) -> float | None:
        return next((r["p50_ms"] for r in results if r["model"] == model and r["batch"] == batch
                     and r["variant"].startswith(prefix)), None)

    aims = {}
    if "resnet18" in per_model and 1 in args.batches:
        cpu_file = p50("resnet18", 1, "model.int8.cpu.onnx")
        aims["resnet18_b1_int8_cpu_speedup_vs_fp32_ort"] = p50("resnet18", 1, "fp32 onnxruntime") / cpu_file
        aims["int8_2x_fp32_ort_met"] = aims["resnet18_b1_int8_cpu_speedup_vs_fp32_ort"] >= 2.0
    aims["cpu_file_never_slower_than_ort_own"] = all(
        p50(m, b, "model.int8.cpu.onnx") <= p50(m, b, "ort own") * 1.0 for m in per_model for b in args.batches)
    aims["cpu_file_vs_ort_own"] = {f"{m} b{b}": p50(m, b, "ort own") / p50(m, b, "model.int8.cpu.onnx")
                                   for m in per_model for b in args.batches}
    console.print(aims, soft_wrap=True)
    doc = {
        "benchmark": "realistic", "issue": 14, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {"cpu": cpu["model"], "cores": cpu["cores"], "arch": cpu["arch"],
                    "flags": {k: cpu["flags"].get(k) for k in ("avx2", "avx512f", "avx512_vnni", "avx_vnni")},
                    "int8_isa": int8_isa(cpu), "auto_cpu_flavour": choose_cpu_flavour("auto"),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "torchvision": torchvision.__version__, "onnxruntime": onnxruntime.__version__,
                    "onnx": onnx.__version__, "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
        "settings": {"threads": args.threads, "batches": args.batches, "calibration_images": args.calib,
                     "holdout_images": args.holdout, "rounds": args.rounds, "input": [3, 224, 224],
                     "images": "synthetic natural-ish RGB PNGs (1/f noise, discs, bars), 256x256 -> resize 256, crop 224",
                     "weights": "torchvision random init, BN statistics re-estimated on the calibration images",
                     "calibration": "edgec quantize defaults (percentile 99.999, per-channel); ORT own: min-max"},
        "aims": aims,
        "quantize_seconds": {m: {"edgec_quantize_all_files": v["quantize_s"], "ort_own": v["ort_own_quantize_s"]}
                             for m, v in per_model.items()},
        "deploy": {m: v["deploy"] for m, v in per_model.items()},
        "rows": results,
    }
    atomic_write_json(args.out, doc)
    console.print(f"wrote {args.out}", soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

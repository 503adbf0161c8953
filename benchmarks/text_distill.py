"""Benchmark: Tang et al.'s BERT -> BiLSTM distillation on SST-2, against the issue's aims.

Runs (or reuses) `edgec build sst2-bilstm`, then, on the same data, vocabulary, embedding init and
optimiser settings, trains the two baselines the paper compares with:

    plain BiLSTM                cross-entropy on the gold labels (no teacher)
    distilled, no augmentation  MSE on the teacher's logits of the original sentences only
    distilled, augmented        the build's student (MSE on logits over originals + augmented copies)

and times the teacher (torch) and the student (ONNX Runtime FP32 and INT8) at batch 1 on the
median-length test sentence, one after another in this process, with the same thread count.

    aims: distilled (augmented) >= plain + 2 points; >= 50x fewer parameters; >= 20x faster at batch 1

Usage: python benchmarks/text_distill.py --data ../shared/data/sst2 [--run runs/sst2-bilstm]
       [--threads 1] [--out benchmarks/results/text_distill.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def accuracy(model, vocab, split) -> float:
    import torch

    ids, _ = vocab.encode(split.sentences)
    with torch.inference_mode():
        logits = torch.cat([model(torch.from_numpy(ids[i:i + 512])) for i in range(0, len(ids), 512)])
    return float((logits.argmax(1).numpy() == split.y).mean())


def train_variant(name, recipe, ds, vocab, init, sentences, logits, gold, workdir):
    from edgec.stages.train import train_config
    from edgec.text.distill import build_student, train_student

    s = recipe.text.student
    params = {"embed_dim": s.embed_dim, "hidden": s.hidden, "mlp_hidden": s.mlp_hidden, "dropout": s.dropout,
              "num_classes": ds.num_classes}
    model = build_student(vocab, params, init, seed=recipe.seed)
    t0 = time.perf_counter()
    result = train_student(model, vocab, sentences, logits, gold, (ds.val.sentences, ds.val.y),
                           train_config(recipe.distill.train, recipe.seed), workdir=workdir, description=name,
                           ce_weight=float(recipe.distill.params.get("ce_weight", 0.0)))
    return result.model.eval(), time.perf_counter() - t0


def latency(work_inputs, files, name, feeds, threads):
    from edgec.bench.run import Timing, bench_model

    path, runtime, _ = files[name]
    entry = bench_model(lambda: work_inputs.open(name, path, runtime, threads), lambda b: feeds, [1],
                        Timing(warmup_runs=20, min_runs=300, min_duration_s=3.0))
    return entry["latency"]["1"]["host"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--recipe", default="sst2-bilstm")
    ap.add_argument("--run", type=Path, default=Path("runs/sst2-bilstm"))
    ap.add_argument("--threads", type=int, default=1, help="threads of every timed model (torch and ORT)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "text_distill.json")
    args = ap.parse_args()

    from edgec.pipeline import build
    from edgec.recipe import load_recipe
    from edgec.stages.check import model_files
    from edgec.stages.tasks import TEXT
    from edgec.stages.text import TextInputs, median_sentence, load_transfer, student_init
    from edgec.text.data import load_sst2
    from edgec.text.student import load_student
    from edgec.text.vocab import Vocab

    load_before = os.getloadavg()
    recipe = load_recipe(args.recipe, data_path=args.data)
    t0 = time.perf_counter()
    result = build(recipe, out=args.run)
    build_s = time.perf_counter() - t0
    arts = result.artifacts
    ds = load_sst2(recipe.data.path, val_fraction=recipe.data.val_fraction, seed=recipe.seed, limit=recipe.data.limit,
                   test_limit=recipe.text.test_limit)
    vocab = Vocab.load(arts["distill"].file("vocab.json"))
    init = student_init(arts["teacher"].path, vocab, recipe.text.student)
    sentences, gold, logits = load_transfer(arts["transfer"])
    n = len(ds.train)
    work = args.run / "text_distill_bench"
    work.mkdir(parents=True, exist_ok=True)
    plain, plain_s = train_variant("plain", recipe, ds, vocab, init, ds.train.sentences, None, ds.train.y, work / "plain")
    no_aug, no_aug_s = train_variant("distilled-no-aug", recipe, ds, vocab, init, sentences[:n], logits[:n], gold[:n],
                                     work / "no_aug")
    aug = load_student(arts["distill"].file("student.safetensors"))
    report = json.loads((args.run / "report.json").read_text())
    m = report["models"]
    acc = {"teacher": m["teacher"]["accuracy"], "plain_bilstm": accuracy(plain, vocab, ds.test),
           "distilled_no_augmentation": accuracy(no_aug, vocab, ds.test),
           "distilled_augmented": accuracy(aug, vocab, ds.test),
           "distilled_augmented_int8_onnx": m["student_int8"]["accuracy"]}

    class Work:  # TextInputs reads the build's artifacts as a stage's parents
        parents = [arts[s] for s in ("teacher", "distill", "export", "quantize", "engine")]

    inputs = TextInputs(None, Work)
    files = model_files(arts, TEXT)
    one = median_sentence(ds.test.sentences)
    load_timing = os.getloadavg()
    lat = {name: latency(inputs, files, name, inputs.ids(name, [one]), args.threads)
           for name in ("teacher", "student_fp32_onnx", "student_int8")}
    t_p50 = lat["teacher"]["p50"]
    params = {k: m[k]["params_detail"] for k in ("teacher", "student")}
    doc = {
        "benchmark": "text_distill", "recipe": recipe.name, "data": str(args.data),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "loadavg_before": load_before, "loadavg_at_timing": load_timing, "loadavg_after": os.getloadavg(),
                    "threads_per_model": args.threads, "python": sys.version.split()[0]},
        "dataset": ds.describe()["sizes"], "test_source": ds.test_source,
        "transfer": {"originals": n, "augmented": len(sentences) - n},
        "accuracy": acc,
        "distilled_minus_plain_points": (acc["distilled_augmented"] - acc["plain_bilstm"]) * 100,
        "params": params,
        "param_reduction": params["teacher"]["total"] / params["student"]["total"],
        "param_reduction_without_embeddings": (params["teacher"]["without_embeddings"]
                                               / params["student"]["without_embeddings"]),
        "latency_batch1_ms": {k: {q: v[q] for q in ("p50", "p90", "p99", "cv")} for k, v in lat.items()},
        "speedup_batch1_p50": {k: t_p50 / lat[k]["p50"] for k in ("student_fp32_onnx", "student_int8")},
        "median_sentence": one, "seconds": {"build": build_s, "plain": plain_s, "distilled_no_aug": no_aug_s},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    rows = [("teacher (MiniLM-L6, torch)", acc["teacher"], params["teacher"], lat["teacher"]["p50"]),
            ("plain BiLSTM (CE on labels)", acc["plain_bilstm"], params["student"], None),
            ("distilled BiLSTM, no augmentation", acc["distilled_no_augmentation"], params["student"], None),
            ("distilled BiLSTM, augmented (FP32 ONNX)", acc["distilled_augmented"], params["student"],
             lat["student_fp32_onnx"]["p50"]),
            ("distilled BiLSTM, augmented (INT8 ONNX)", acc["distilled_augmented_int8_onnx"], params["student"],
             lat["student_int8"]["p50"])]
    print(f"| model | test accuracy | params (total / w/o embeddings) | batch-1 p50 ms ({args.threads} thread) |")
    print("|---|---:|---:|---:|")
    for name, a, p, ms in rows:
        print(f"| {name} | {a * 100:.2f}% | {p['total']:,} / {p['without_embeddings']:,} | "
              f"{'–' if ms is None else f'{ms:.3f}'} |")
    print(f"\ndistilled - plain: {doc['distilled_minus_plain_points']:+.2f} points (aim >= +2)")
    print(f"parameters: {doc['param_reduction']:.1f}x fewer ({doc['param_reduction_without_embeddings']:.1f}x "
          "without embedding tables; aim >= 50x)")
    print("batch-1 speed-up vs teacher: " + ", ".join(f"{k} {v:.1f}x" for k, v in doc["speedup_batch1_p50"].items())
          + " (aim >= 20x)")
    print(f"load average before / at timing / after: {load_before} / {load_timing} / {os.getloadavg()}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput (samples/s) with 1 and 2 CPU processes (torchrun + gloo + DDP) on this machine.

For each workload, three ways to use two cores: 1 process x 1 thread, 1 process x 2 threads,
2 processes x 1 thread (edgec's DDP path, global batch unchanged). Throughput is training samples
per second over the epochs after the first (warm-up), validation included, as `fit` runs them.

    python benchmarks/distributed.py            # table + benchmarks/results/distributed.json

Each run is its own torchrun launch (this file is also the worker); start-up is not timed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
RESULTS = HERE.parent / "results" / "distributed.json"
SHARED = HERE.parents[2] / "shared" / "data"
# (name, dataset, data path, model, params, batch, epochs)
WORKLOADS = [
    ("digits teacher_cnn w32", "digits", None, "teacher_cnn", {"width": 32}, 64, 4),
    ("mnist teacher_cnn w32", "mnist", str(SHARED / "mnist"), "teacher_cnn", {"width": 32}, 128, 3),
]
SETUPS = [(1, 1), (1, 2), (2, 1)]  # (processes, torch threads per process)


def worker(index: int, threads: int, out: Path) -> None:
    import torch

    from edgec import distributed
    from edgec.data import load_dataset
    from edgec.models import ModelSpec
    from edgec.train import TrainConfig, fit, set_seed

    torch.set_num_threads(threads)
    name, data, path, model, params, batch, epochs = WORKLOADS[index]
    with distributed.session():
        ds = load_dataset(data, path, val_fraction=0.1, test_fraction=0.2, seed=0)
        spec = ModelSpec(name=model, params=params, in_channels=ds.input_shape[0], num_classes=ds.num_classes,
                         input_size=tuple(ds.input_shape[1:]))
        set_seed(0)
        net = spec.build()
        result = fit(net, (ds.train.x, ds.train.y), (ds.val.x, ds.val.y),
                     TrainConfig(epochs=epochs, batch_size=batch, lr=2e-3, seed=0), progress=False)
        timed = result.history[1:]
        if distributed.is_main():
            out.write_text(json.dumps({
                "samples_per_s": len(ds.train.y) * len(timed) / sum(h["seconds"] for h in timed),
                "epoch_seconds": [h["seconds"] for h in result.history],
                "val_accuracy": result.history[-1]["val_accuracy"], "train_samples": len(ds.train.y)}))


def main() -> None:
    rows = []
    load_before = os.getloadavg()
    for index, (name, data, path, *_rest) in enumerate(WORKLOADS):
        if path and not Path(path).is_dir():
            print(f"skip {name}: {path} not found")
            continue
        for procs, threads in SETUPS:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "r.json"
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
                       str(HERE), "--worker", str(index), str(threads), str(out)]
                env = {**os.environ, "OMP_NUM_THREADS": str(threads), "EDGEC_DIST_BACKEND": "gloo"}
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, env=env, capture_output=True)
                wall = time.perf_counter() - t0
                r = json.loads(out.read_text())
            rows.append({"workload": name, "processes": procs, "threads": threads, "wall_s": wall, **r})
            print(f"{name:26s} {procs}p x {threads}t: {r['samples_per_s']:9.0f} samples/s  "
                  f"val_acc {r['val_accuracy']:.3f}  (launch+run {wall:.1f} s)")
    for r in rows:
        base = next(b for b in rows if b["workload"] == r["workload"] and (b["processes"], b["threads"]) == (1, 1))
        r["speedup_vs_1p1t"] = r["samples_per_s"] / base["samples_per_s"]
    import torch

    doc = {"benchmark": "edgec distributed training throughput (CPU, gloo)", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "torch": torch.__version__, "python": platform.python_version()},
           "load_average_before": load_before, "load_average_after": os.getloadavg(), "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=1) + "\n")
    print("\n| workload | processes x threads | samples/s | vs 1x1 |\n|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['workload']} | {r['processes']} x {r['threads']} | {r['samples_per_s']:.0f} | {r['speedup_vs_1p1t']:.2f} |")
    print(f"\nload average before {load_before}, after {doc['load_average_after']}; wrote {RESULTS}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
    else:
        main()

"""`edgec bench`: latency (and energy) of one model file, as a results document.

    open the model (runner for its file type, on the device's providers)
    -> inputs: --shape, else deploy.json, else the model's static shape; random normal data
    -> idle power baseline (when a meter reads)
    -> cold start (load + first inference, host clock), then per batch size:
       warm-up, timed runs (host clock; on a GPU CUDA events too), an energy window
    -> results JSON (edgec.bench/1), table, plots

`edgec build`'s bench stage calls :func:`bench_model` too, so both produce the same numbers.

Example:
    >>> from edgec.bench.run import BenchConfig, run_bench
    >>> doc = run_bench(BenchConfig("runs/digits/deploy/model.int8.onnx", batches=(1, 8)))  # doctest: +SKIP
    >>> doc["models"]["model.int8.onnx"]["latency"]["8"]["host"]["p50"]                   # doctest: +SKIP
    0.21
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgec.bench.timing import HostClock, LatencyStats, bench_runner, cold_start, latency_stats
from edgec.errors import EdgecError, ModelError

__all__ = ["DEVICES", "Timing", "BenchConfig", "run_bench", "bench_model", "runner_options",
           "resolve_inputs", "make_feeds", "pick_energy_meter"]

DEVICES = ("cpu", "cuda", "jetson")
_PICKLES = (".pt", ".pth", ".pkl", ".bin", ".ckpt")


@dataclass
class Timing:
    """Warm-up and stopping rules (see :func:`edgec.bench.timing.measure_latency`)."""

    warmup_runs: int = 10
    warmup_s: float = 0.2
    min_runs: int = 100
    min_duration_s: float = 1.0
    energy_idle_s: float = 2.0      # idle baseline, measured once per run
    energy_min_s: float = 2.0       # each energy window lasts max(this, min_duration_s)

    def latency_kwargs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("warmup_runs", "warmup_s", "min_runs", "min_duration_s")}


@dataclass
class BenchConfig:
    """Everything `edgec bench` takes; ``shape`` is one sample's shape, without the batch dim."""

    model: str | os.PathLike[str]
    device: str = "cpu"
    runtime: str = "auto"
    batches: Sequence[int] = (1,)
    shape: Sequence[int] | None = None
    deploy: str | os.PathLike[str] | None = None
    energy: str = "auto"
    providers: Sequence[str] | None = None
    threads: int | None = None
    timing: Timing = field(default_factory=Timing)
    json_out: str | os.PathLike[str] | None = None
    plot_dir: str | os.PathLike[str] | None = None
    seed: int = 0


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Benchmark ``cfg.model``; print a table; write ``cfg.json_out`` and plots; return the results.

    Example:
        >>> run_bench(BenchConfig("model.onnx", batches=(1, 8), json_out="bench.json"))  # doctest: +SKIP
    """
    from edgec.bench.plots import print_results
    from edgec.bench.results import new_results, stability_warnings, write_results

    path = _check_config(cfg)
    settings = {**asdict(cfg.timing), "threads": cfg.threads, "batches": list(cfg.batches),
                "energy": cfg.energy, "runtime": cfg.runtime,
                "providers": list(cfg.providers) if cfg.providers else None}
    doc = new_results("edgec bench", cfg.device, settings)
    clock = _device_clock(cfg.device)
    runtime, options = runner_options(path, cfg.runtime, cfg.device, cfg.threads, cfg.providers,
                                      stream=clock.stream if clock is not None else None)
    if clock is None and cfg.device != "cpu":
        doc["warnings"].append("torch sees no CUDA GPU, so device time (CUDA events) was not "
                               "measured; figures are host end-to-end only")

    def open_fn():
        from edgec.runtimes import open_runner

        return open_runner(path, runtime=runtime, **options)

    with open_fn() as probe:  # inputs are known once the model is open; fails early on a bad file
        plans = resolve_inputs(probe, path, cfg.shape, cfg.deploy)
        _check_batches(probe, cfg.batches)
    meter, idle_w, why = pick_energy_meter(cfg.energy, cfg.device, cfg.timing.energy_idle_s)
    rng = np.random.default_rng(cfg.seed)
    feeds = {b: make_feeds(plans, b, rng) for b in cfg.batches}
    try:
        entry = bench_model(open_fn, feeds.__getitem__, cfg.batches, cfg.timing, clock=clock,
                            meter=meter, idle_power_w=idle_w, energy_skipped=why)
    finally:
        if meter is not None:
            meter.close()
    entry = {"file": str(path), "bytes": path.stat().st_size, "params": None, "flops": None,
             "accuracy": None, "inputs": plans, **entry}
    doc["models"][path.name] = entry
    doc["warnings"] += stability_warnings(doc)
    if cfg.json_out:
        write_results(cfg.json_out, doc)
    if cfg.plot_dir:
        from edgec.bench.plots import write_plots

        write_plots(doc, cfg.plot_dir)
    print_results(doc)
    return doc


def bench_model(open_fn: Callable[[], Any], feeds_for: Callable[[int], Any], batches: Sequence[int],
                timing: Timing, *, clock: Any = None, meter: Any = None, idle_power_w: float = 0.0,
                energy_skipped: str = "energy was not requested") -> dict[str, Any]:
    """Cold start, then latency (and energy) per batch size of one model: a results ``models`` entry.

    ``open_fn()`` opens a fresh runner; ``feeds_for(batch)`` gives its input (array or dict);
    ``clock`` is a :class:`~edgec.bench.timing.CudaEventClock` on a GPU (None: host clock only).

    Example:
        >>> bench_model(lambda: open_runner("m.onnx"), lambda b: x[:b], [1, 8], Timing())  # doctest: +SKIP
        {'runtime': 'onnxruntime', 'runner': {...}, 'cold_start': {...}, 'latency': {'1': ..., '8': ...}, ...}
    """
    cold = cold_start(open_fn, feeds_for(batches[0]))
    out: dict[str, Any] = {"cold_start": cold, "latency": {}}
    energy: dict[str, Any] = ({"skipped": energy_skipped} if meter is None else
                              {"meter": meter.name, "idle_power_w": idle_power_w, "batches": {}})
    with open_fn() as runner:
        out["runtime"] = runner.runtime
        if str(runner.describe().get("device", "cpu")).startswith("cpu"):
            clock = None  # CUDA events around CPU work would time nothing
        for b in batches:
            stats = time_batch(runner, feeds_for(b), b, timing, clock)
            out["latency"][str(b)] = {kind: s.to_dict() for kind, s in stats.items()}
            if "batches" in energy:
                try:
                    energy["batches"][str(b)] = _energy_window(meter, runner, feeds_for(b), b,
                                                               timing, idle_power_w, clock)
                except EdgecError as exc:  # a sensor that stops reading must not lose the latency
                    energy = {"skipped": f"energy measurement failed at batch {b}: {exc.message}"}
        out["runner"] = runner.describe()  # after the runs: a torch runner learns its outputs then
    out["energy"] = energy
    return out


def time_batch(runner: Any, feeds: Any, batch: int, timing: Timing,
               clock: Any = None) -> dict[str, LatencyStats]:
    """``{"host": stats}`` on a CPU; ``{"device": CUDA-event stats, "host": same calls' host stats}``.

    Example:
        >>> time_batch(runner, x[:8], 8, Timing(min_runs=50))["host"].p50    # doctest: +SKIP
    """
    if clock is None:
        return {"host": bench_runner(runner, feeds, batch_size=batch, **timing.latency_kwargs())}
    import torch

    clock.host_samples_ms.clear()
    with torch.cuda.stream(clock.stream):  # warm-up on the timed stream too (allocator pools)
        device = bench_runner(runner, feeds, batch_size=batch, clock=clock, **timing.latency_kwargs())
    host = latency_stats(list(clock.host_samples_ms), batch_size=batch, clock=HostClock.name)
    return {"device": device, "host": host}


def _energy_window(meter: Any, runner: Any, feeds: Any, batch: int, timing: Timing,
                   idle_power_w: float, clock: Any) -> dict[str, Any]:
    # Its own pass, after timing: the sampler thread costs a little CPU (edgec.bench.energy).
    import time

    from edgec.bench.energy import PowerSampler
    from edgec.bench.timing import _as_feeds
    from edgec.backends.runner import prepare_feeds

    ready = prepare_feeds(runner.inputs, _as_feeds(runner, feeds))
    sync = clock.stream.synchronize if clock is not None else (lambda: None)
    runner.run(ready)
    sync()
    calls, window = 0, max(timing.energy_min_s, timing.min_duration_s)
    with PowerSampler(meter) as sampler:
        start = time.perf_counter()
        while calls < 1 or time.perf_counter() - start < window:
            runner.run(ready)
            calls += 1
        sync()
    return sampler.result(calls * batch, idle_power_w).to_dict()


def pick_energy_meter(spec: str, device: str, idle_s: float) -> tuple[Any, float, str]:
    """``(meter or None, idle watts, why energy is skipped)``; measures the idle baseline first.

    ``"off"`` and an ``auto`` that finds no readable meter skip energy with the reason; a meter
    asked for by name that cannot read is an error (from :func:`edgec.bench.energy.pick_meter`).

    Example:
        >>> pick_energy_meter("off", "cpu", 2.0)
        (None, 0.0, 'energy measurement is off (--energy off)')
    """
    if spec.strip().lower() in ("off", "none"):
        return None, 0.0, "energy measurement is off (--energy off)"
    from edgec.bench import energy

    meter = energy.pick_meter(spec, device=device)
    if meter is None:
        return None, 0.0, ("no power meter can read on this machine (see the warning above; "
                           "`edgec doctor` lists the meters and what each needs)")
    try:
        idle = energy.measure_idle(meter, idle_s) if idle_s > 0 else 0.0
    except EdgecError as exc:
        meter.close()
        if spec.strip().lower() != "auto":
            raise
        return None, 0.0, f"the {meter.name} power meter failed to measure idle power: {exc.message}"
    return meter, idle, ""


def runner_options(path: Path, runtime: str, device: str, threads: int | None,
                   providers: Sequence[str] | None = None, stream: Any = None) -> tuple[str, dict]:
    """``(runtime, open_runner options)`` for ``path`` on ``device``.

    ONNX Runtime: ``["cpu"]`` on the CPU; on a GPU CUDA then CPU, sharing ``stream`` (so CUDA events
    on it bracket ORT's kernels); TensorRT's provider only when named in ``providers``. torch: the
    device's CUDA GPU or the CPU. ``threads`` sets intra-op threads (ORT) or torch's thread count.
    TensorRT engines and the kernels runtime need a GPU device (they run on torch's current stream).

    Example:
        >>> runner_options(Path("m.onnx"), "auto", "cpu", 1)
        ('onnxruntime', {'providers': ['cpu'], 'intra_op_threads': 1})
    """
    from edgec.backends import SUFFIXES, get_backend

    native = SUFFIXES.get(path.suffix.lower(), runtime)
    runtime = native if runtime == "auto" else runtime
    options = get_backend(runtime).bench_options(device, threads, providers, stream)
    return runtime, options


def resolve_inputs(runner: Any, model_path: Path, shape: Sequence[int] | None = None,
                   deploy: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Per input: ``{"name", "shape" (one sample), "dtype", "source"}``, from ``shape``, else the
    deploy JSON (``deploy``, or ``deploy.json`` / ``deploy/deploy.json`` beside the model), else the
    model's own static shape; a clear error when none says.

    Example:
        >>> resolve_inputs(runner, Path("m.onnx"), shape=(1, 28, 28))        # doctest: +SKIP
        [{'name': 'input', 'shape': [1, 28, 28], 'dtype': 'float32', 'source': '--shape'}]
    """
    specs = runner.inputs
    if shape is not None:
        if len(specs) != 1:
            raise ModelError(f"--shape gives one input's shape but {model_path.name} has "
                             f"{len(specs)} inputs", hint="describe them in a deploy JSON (--deploy)")
        return [_plan(specs[0], list(shape), "--shape")]
    found = Path(deploy) if deploy else next(
        (p for p in (model_path.parent / "deploy.json", model_path.parent / "deploy" / "deploy.json")
         if p.is_file()), None)
    if found is not None and len(specs) == 1:
        return [_plan(specs[0], _deploy_shape(found), str(found))]
    plans = []
    for spec in specs:
        dims = list(spec.shape[1:])
        if not all(isinstance(d, int) and d > 0 for d in dims):
            raise ModelError(
                f"cannot tell the input shape of {model_path.name}: input '{spec.name}' has shape "
                f"{list(spec.shape)}",
                hint="pass --shape C,H,W (one sample, without the batch dimension) or --deploy "
                     "path/to/deploy.json")
        plans.append(_plan(spec, dims, "model"))
    return plans


def _deploy_shape(path: Path) -> list[int]:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        shape = info["input"]["shape"][1:]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EdgecError(f"cannot read the input shape from {path} ({type(exc).__name__}: {exc})",
                         hint="pass a deploy.json written by edgec build, or --shape") from exc
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise EdgecError(f"{path}: input shape {info['input']['shape']} has no fixed sample shape",
                         hint="pass --shape")
    return shape


def _plan(spec: Any, shape: list[int], source: str) -> dict[str, Any]:
    fixed = list(spec.shape[1:])
    if any(d <= 0 for d in shape):
        raise EdgecError(f"input shape {shape} must be positive integers", hint="e.g. --shape 1,28,28")
    if fixed and fixed != [None] and (len(fixed) != len(shape) or any(
            isinstance(f, int) and f != s for f, s in zip(fixed, shape))):
        raise ModelError(f"input '{spec.name}' takes samples of shape {fixed}, not {shape} ({source})",
                         hint="fix --shape / the deploy JSON to match the model")
    return {"name": spec.name, "shape": shape, "dtype": spec.dtype, "source": source}


def make_feeds(plans: list[dict[str, Any]], batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs of ``batch`` samples: standard normal floats, integers in [1, 100), random bools.

    Never all zeros: zeros can take fast paths (and sparse kernels) that real data does not.

    Example:
        >>> plans = [{"name": "x", "shape": [3], "dtype": "float32"}]
        >>> make_feeds(plans, 2, np.random.default_rng(0))["x"].shape
        (2, 3)
    """
    feeds = {}
    for p in plans:
        shape, dtype = (batch, *p["shape"]), np.dtype(p["dtype"] if p["dtype"] != "unknown" else "float32")
        if dtype.kind == "f":
            feeds[p["name"]] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            feeds[p["name"]] = rng.integers(1, 100, shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[p["name"]] = rng.random(shape) < 0.5
        else:
            raise ModelError(f"cannot make random data for input '{p['name']}' of dtype {dtype}")
    return feeds


def _check_config(cfg: BenchConfig) -> Path:
    path = Path(cfg.model)
    if cfg.device not in DEVICES:
        raise EdgecError(f"unknown device '{cfg.device}'", hint=f"use one of: {', '.join(DEVICES)}")
    if not cfg.batches or any(int(b) < 1 for b in cfg.batches):
        raise EdgecError(f"batch sizes must be >= 1, got {list(cfg.batches)}", hint="e.g. --batch 1,8,32")
    if cfg.device == "jetson":
        from edgec.machine import is_jetson

        if not is_jetson():
            raise EdgecError("--device jetson, but this machine is not a Jetson (no "
                             "/etc/nv_tegra_release or Jetson device-tree model)",
                             hint="use --device cuda on a desktop GPU or --device cpu")
    if path.suffix.lower() in _PICKLES:
        raise ModelError(
            f"cannot benchmark {path.name}: a {path.suffix} file is a pickle (loading it can run "
            "arbitrary code), and a safe state dict holds weights only, without the architecture",
            hint="benchmark an ONNX export (`edgec build` writes deploy/model.onnx; or "
                 "torch.onnx.export) or an edgec .safetensors model (edgec.models.save_model)")
    if not path.is_file():
        raise ModelError(f"model file not found: {path}", hint="check the path")
    return path


def _check_batches(runner: Any, batches: Sequence[int]) -> None:
    dim = runner.inputs[0].shape[0] if runner.inputs and runner.inputs[0].shape else None
    bad = [b for b in batches if isinstance(dim, int) and dim > 0 and b != dim]
    if bad:
        raise ModelError(f"the model's batch dimension is fixed at {dim}; cannot run batch {bad}",
                         hint=f"use --batch {dim}, or export the model with a dynamic batch dimension")


def _device_clock(device: str) -> Any:
    if device == "cpu":
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    from edgec.bench.timing import CudaEventClock

    return CudaEventClock()

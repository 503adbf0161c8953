"""Latency measurement: warm up, time many runs, report percentiles and the raw samples.

Method (trtexec / MLPerf): warm up until both ``warmup_runs`` and ``warmup_s`` are reached, then
time one call per sample until both ``min_runs`` and ``min_duration_s`` are reached, and report
min/mean/p50/p90/p95/p99/max, the coefficient of variation (trtexec warns above 2.5%) and the
samples themselves, so ``gate`` can run its own statistics later.

Which clock took a figure matters: host end-to-end latency (what an application sees, copies and
Python included) is not device compute time. Each sample is taken by a :class:`Clock`:
:class:`HostClock` (``perf_counter_ns``) everywhere, :class:`CudaEventClock` (CUDA events on one
stream) on a CUDA GPU; the latter also keeps the host time of the same calls, so one timed loop
gives both figures, reported separately.

Example:
    >>> stats = measure_latency(lambda: model(x), batch_size=8, min_runs=200)   # doctest: +SKIP
    >>> stats.p50, stats.p99, stats.stable                                      # doctest: +SKIP
    (1.92, 2.31, True)
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgec.errors import EdgecError

if TYPE_CHECKING:
    from edgec.backends.runner import Runner

__all__ = [
    "Clock", "HostClock", "CudaEventClock", "LatencyStats", "latency_stats", "measure_latency",
    "bench_runner", "cold_start", "STABLE_CV",
]

STABLE_CV = 0.025  # trtexec's threshold on std/mean for a "stable" measurement


class Clock(Protocol):
    """Times one call. ``name`` says what a sample means and is stored with every result."""

    name: str

    def time_call(self, fn: Callable[[], object]) -> float:
        """Call ``fn`` once and return its duration in milliseconds."""
        ...


class HostClock:
    """Host wall clock around the whole call (``time.perf_counter_ns``): end-to-end latency.

    Example:
        >>> HostClock().time_call(lambda: None) >= 0.0
        True
    """

    name = "host perf_counter_ns (end-to-end)"

    def time_call(self, fn: Callable[[], object]) -> float:
        start = time.perf_counter_ns()
        fn()
        return (time.perf_counter_ns() - start) / 1e6


class CudaEventClock:
    """Device time between two CUDA events recorded on ``stream`` around the call, in ms.

    The call runs with ``stream`` as torch's current stream, so torch work lands between the two
    events; give ONNX Runtime the same stream (its CUDA provider's ``user_compute_stream``, see
    :func:`edgec.bench.run.runner_options`). Device time spans first to last GPU work on that stream,
    idle gaps while the host launches included (what trtexec calls GPU compute time); it excludes
    Python and the wait for the result. Each call also waits for the end event, and that call's host
    end-to-end time (``perf_counter_ns`` around record, call and wait) goes to ``host_samples_ms``,
    so one timed loop gives both figures. torch's legacy default stream is never used: ONNX Runtime
    treats handle 0 as "no stream" (``stream=None`` creates a new one).

    Example:
        >>> clock = CudaEventClock()                                     # doctest: +SKIP
        >>> stats = measure_latency(lambda: runner.run(feeds), clock=clock)  # doctest: +SKIP
        >>> host = latency_stats(clock.host_samples_ms, clock=HostClock.name)  # doctest: +SKIP
    """

    name = "cuda events (device)"

    def __init__(self, device: int | str | None = None, stream: Any = None):
        import torch

        if not torch.cuda.is_available():
            raise EdgecError(
                "CUDA event timing needs a CUDA GPU, and torch sees none "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'})",
                hint="use the host clock (the default) or run on a machine with a CUDA GPU",
            )
        self._torch = torch
        self.device = torch.device("cuda" if device is None else device)
        if self.device.type != "cuda":
            raise EdgecError(f"CudaEventClock needs a CUDA device, got '{device}'")
        self.stream = stream if stream is not None else torch.cuda.Stream(self.device)
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self.host_samples_ms: list[float] = []

    def time_call(self, fn: Callable[[], object]) -> float:
        with self._torch.cuda.stream(self.stream):
            t0 = time.perf_counter_ns()
            self._start.record(self.stream)
            fn()
            self._end.record(self.stream)
            self._end.synchronize()
            self.host_samples_ms.append((time.perf_counter_ns() - t0) / 1e6)
        return float(self._start.elapsed_time(self._end))


@dataclass
class LatencyStats:
    """Summary of ``count`` timed calls of ``batch_size`` items each; all times in milliseconds.

    ``std`` is the population standard deviation (ddof=0), ``cv = std / mean``, ``throughput`` is
    items per second over the summed sample time, and percentiles use linear interpolation.
    """

    batch_size: int
    count: int
    samples_ms: list[float]
    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float
    cv: float
    throughput: float
    clock: str
    stable: bool

    def to_dict(self, include_samples: bool = True) -> dict[str, Any]:
        """JSON-ready dict; ``include_samples=False`` drops the raw samples (for compact tables).

        Example:
            >>> latency_stats([1.0, 2.0], batch_size=1).to_dict(False)["p50"]
            1.5
        """
        out = asdict(self)
        if not include_samples:
            del out["samples_ms"]
        return out


def latency_stats(
    samples_ms: list[float], batch_size: int = 1, clock: str = HostClock.name
) -> LatencyStats:
    """Statistics of per-call latencies (ms) of calls that each process ``batch_size`` items.

    Example:
        >>> s = latency_stats([1.0, 1.0, 1.0, 5.0], batch_size=2)
        >>> s.mean, s.max, s.throughput      # 8 items in 8 ms
        (2.0, 5.0, 1000.0)
    """
    if not samples_ms:
        raise EdgecError("no latency samples to summarise", hint="time at least one run")
    a = np.asarray(samples_ms, dtype=np.float64)
    mean = float(a.mean())
    std = float(a.std())  # ddof=0, as trtexec computes it
    p50, p90, p95, p99 = (float(v) for v in np.percentile(a, [50, 90, 95, 99], method="linear"))
    total_s = float(a.sum()) / 1e3
    cv = std / mean if mean > 0 else 0.0
    return LatencyStats(
        batch_size=batch_size,
        count=int(a.size),
        samples_ms=[float(v) for v in a],
        min=float(a.min()),
        mean=mean,
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
        max=float(a.max()),
        std=std,
        cv=cv,
        throughput=batch_size * a.size / total_s if total_s > 0 else float("inf"),
        clock=clock,
        stable=cv <= STABLE_CV,
    )


def measure_latency(
    fn: Callable[[], object],
    *,
    batch_size: int = 1,
    warmup_runs: int = 10,
    warmup_s: float = 0.2,
    min_runs: int = 100,
    min_duration_s: float = 1.0,
    max_runs: int = 1_000_000,
    clock: Clock | None = None,
) -> LatencyStats:
    """Warm up, then time ``fn()`` until both ``min_runs`` and ``min_duration_s`` are reached.

    ``min_duration_s`` counts timed sample time (the throughput denominator), so for the host
    clock the timed loop runs at least that long on the wall clock too. ``max_runs`` caps the
    timed loop for very fast functions. ``clock`` defaults to :class:`HostClock`. Python's
    cyclic garbage collector is paused during the timed loop (as in ``timeit``).

    Example:
        >>> s = measure_latency(lambda: sum(range(1000)), min_runs=50, min_duration_s=0.01)
        >>> s.count >= 50
        True
    """
    if batch_size < 1 or min_runs < 1 or warmup_runs < 0 or warmup_s < 0 or min_duration_s < 0:
        raise EdgecError(
            "latency settings out of range: batch_size and min_runs must be >= 1, "
            "warm-up and duration >= 0",
            hint=f"got batch_size={batch_size}, min_runs={min_runs}, warmup_runs={warmup_runs}, "
            f"warmup_s={warmup_s}, min_duration_s={min_duration_s}",
        )
    if max_runs < min_runs:
        raise EdgecError(f"max_runs ({max_runs}) is below min_runs ({min_runs})")
    clock = clock or HostClock()

    # Warm-up: first calls pay for lazy allocation, kernel selection, caches and CPU frequency ramp.
    runs, start = 0, time.perf_counter()
    while runs < warmup_runs or time.perf_counter() - start < warmup_s:
        fn()
        runs += 1

    samples: list[float] = []
    timed_ms, min_ms = 0.0, min_duration_s * 1e3
    # As timeit does: a cyclic-GC pass landing inside a sample is noise from the harness, not
    # the model. Collect once now and keep the collector off while timing.
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while len(samples) < max_runs and (len(samples) < min_runs or timed_ms < min_ms):
            ms = clock.time_call(fn)
            samples.append(ms)
            timed_ms += ms
    finally:
        if gc_was_enabled:
            gc.enable()
    return latency_stats(samples, batch_size=batch_size, clock=clock.name)


def bench_runner(runner: Runner, x: Any, **kwargs: Any) -> LatencyStats:
    """Time ``runner.run`` on ``x`` (one array for a single-input model, or a dict of named arrays).

    The feed is validated and converted once beforehand, so samples time inference, not dtype
    conversion. ``batch_size`` defaults to ``x``'s first dimension; other ``kwargs`` go to
    :func:`measure_latency`.

    Example:
        >>> with open_runner("m.onnx", intra_op_threads=1) as r:        # doctest: +SKIP
        ...     print(bench_runner(r, x[:1], min_duration_s=5).p50)
    """
    from edgec.backends.runner import prepare_feeds

    feeds = _as_feeds(runner, x)
    ready = prepare_feeds(runner.inputs, feeds)
    first = next(iter(ready.values()))
    kwargs.setdefault("batch_size", int(first.shape[0]) if first.ndim else 1)
    return measure_latency(lambda: runner.run(ready), **kwargs)


def cold_start(open_fn: Callable[[], Runner], x: Any) -> dict[str, Any]:
    """Time opening a runner and its first inference (ms, host clock); closes the runner after.

    In-process, so "cold" excludes Python and library import time and the OS page cache may
    already hold the model file; run it in a fresh process for a true first-start figure.

    Example:
        >>> cold_start(lambda: open_runner("m.onnx"), x[:1])            # doctest: +SKIP
        {'load_ms': 41.2, 'first_inference_ms': 3.9, 'total_ms': 45.1, 'runtime': ..., ...}
    """
    t0 = time.perf_counter_ns()
    runner = open_fn()
    t1 = time.perf_counter_ns()
    try:
        runner.run(_as_feeds(runner, x))
        t2 = time.perf_counter_ns()
        runtime = runner.runtime
    finally:
        runner.close()
    return {
        "load_ms": (t1 - t0) / 1e6,
        "first_inference_ms": (t2 - t1) / 1e6,
        "total_ms": (t2 - t0) / 1e6,
        "runtime": runtime,
        "clock": HostClock.name,
    }


def _as_feeds(runner: Runner, x: Any) -> dict[str, Any]:
    if isinstance(x, dict):
        return x
    if len(runner.inputs) != 1:
        raise EdgecError(
            f"the model has {len(runner.inputs)} inputs; pass a dict of arrays by input name",
            hint="inputs: " + ", ".join(s.name for s in runner.inputs),
        )
    return {runner.inputs[0].name: x}

"""How :mod:`edgec.kernels.bench` times a GPU op: device time with a cold L2, and end-to-end host time.

* **Device time** (what the goals are stated in): the kernels' own durations from CUPTI, through
  ``torch.profiler`` (kernels launched by pycuda are seen too: CUPTI traces the whole context). Before every call
  the L2 is flushed by a kernel that reads and writes a buffer twice the L2's size, so weights come from DRAM
  (the H200's 50 MB L2 would otherwise hold a 4096x4096 weight between calls). A call's device time is the sum of
  the durations of the kernels it launched (between two flushes); host gaps are not in it.
  Without CUPTI (profiler gave no kernel records) it falls back to CUDA events around each call, flushed in
  between, which include host launch gaps -- the ``method`` field says which one was used.
* **End-to-end time**: host wall time of one call followed by ``torch.cuda.synchronize()`` (median), and the
  host time per call of back-to-back calls (``throughput_us``, the launch cost when the GPU keeps up).

Example:
    >>> flush = L2Flush()
    >>> dev = device_times({"edgec": lambda: op(x), "cublas": lambda: F.linear(x, w)}, flush, iters=50)
    >>> dev["edgec"]["median_us"], dev["cublas"]["median_us"]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

Fn = Callable[[], Any]
_SYNC_NAMES = ("Event Sync", "Stream Sync", "Context Sync", "Device Sync", "cudaDeviceSynchronize")


class L2Flush:
    """Evicts the L2: one elementwise kernel over an int32 buffer of ``max(2 x L2, 64 MiB)``."""

    def __init__(self) -> None:
        import torch

        props = torch.cuda.get_device_properties(0)
        self.l2_bytes = int(getattr(props, "L2_cache_size", 0) or 50 * 2**20)
        self.nbytes = max(2 * self.l2_bytes, 64 * 2**20)
        self.buf = torch.zeros(self.nbytes // 4, dtype=torch.int32, device="cuda")
        self.names: set[str] = set()

    def __call__(self) -> None:
        self.buf.bitwise_not_()  # reads and writes every byte

    def calibrate(self) -> set[str]:
        """The kernel names the flush launches (so they can be told apart from the op's)."""
        if not self.names:
            events = profile_kernels(lambda: [self() for _ in range(3)])
            self.names = {name for name, _, _ in events}
        return self.names


def _kineto_events(prof: Any) -> list[tuple[str, float, float]] | None:
    try:
        from torch.autograd import DeviceType

        raw = prof.profiler.kineto_results.events()
    except Exception:  # noqa: BLE001 - private API: fall back to the public event list
        return None
    out = []
    for e in raw:
        if e.device_type() != DeviceType.CUDA:
            continue
        if hasattr(e, "start_ns"):
            start, dur = e.start_ns() / 1e3, e.duration_ns() / 1e3
        else:
            start, dur = float(e.start_us()), float(e.duration_us())
        out.append((e.name(), start, dur))
    return out


def _function_events(prof: Any) -> list[tuple[str, float, float]]:
    from torch.autograd import DeviceType

    return [(e.name, float(e.time_range.start), float(e.time_range.elapsed_us())) for e in prof.events()
            if getattr(e, "device_type", None) == DeviceType.CUDA]


def profile_kernels(body: Fn) -> list[tuple[str, float, float]]:
    """``(name, start_us, duration_us)`` of every GPU activity ``body`` caused, in start order."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    # CPU activity too: with CUDA alone some torch versions returned no kernel records (tritonbench #401)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        body()
        torch.cuda.synchronize()
    events = _kineto_events(prof)
    if not events:
        events = _function_events(prof)
    return sorted((e for e in events if not e[0].startswith(_SYNC_NAMES)), key=lambda e: e[1])


def stats(samples: list[float]) -> dict[str, float]:
    """median, p90, min and coefficient of variation of a list of microseconds."""
    a = np.asarray(samples, dtype=np.float64)
    return {"median_us": float(np.median(a)), "p90_us": float(np.percentile(a, 90)), "min_us": float(a.min()),
            "cv": float(a.std() / a.mean()) if a.mean() > 0 else 0.0, "n": int(a.size)}


def device_times(fns: dict[str, Fn], flush: L2Flush, iters: int) -> dict[str, dict[str, Any]]:
    """Device time per call of each function, L2 flushed before every call, all in one profiler session."""
    names = flush.calibrate()
    order = list(fns)

    def body() -> None:
        for key in order:
            for _ in range(iters):
                flush()
                fns[key]()

    events = profile_kernels(body)
    calls: list[list[tuple[str, float, float]]] = []
    for ev in events:  # a flush starts a call; what follows until the next flush belongs to it
        if ev[0] in names:
            calls.append([])
        elif calls:
            calls[-1].append(ev)
    out: dict[str, dict[str, Any]] = {}
    if len(calls) != iters * len(order) or not any(calls):
        for key in order:
            out[key] = event_times(fns[key], flush, iters)
        return out
    for i, key in enumerate(order):
        mine = calls[i * iters:(i + 1) * iters]
        sums = [sum(d for _, _, d in c) for c in mine if c]
        spans = [max(s + d for _, s, d in c) - min(s for _, s, _ in c) for c in mine if c]
        if not sums:
            out[key] = {"error": "no kernel records for this op", "method": "cupti"}
            continue
        kernels = sorted({name for c in mine for name, _, _ in c})
        out[key] = {**stats(sums), "span_median_us": float(np.median(spans)), "kernels_per_call":
                    round(sum(len(c) for c in mine) / len(mine), 2), "kernels": [k[:120] for k in kernels[:6]],
                    "method": "cupti (torch.profiler), L2 flushed before each call"}
    return out


def event_times(fn: Fn, flush: L2Flush, iters: int) -> dict[str, Any]:
    """Fallback: CUDA events around each call (L2 flushed between calls); includes host launch gaps."""
    import torch

    samples = []
    for _ in range(iters):
        flush()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1000.0)
    return {**stats(samples), "method": "cuda events around each call, L2 flushed (includes host launch gaps)"}


def host_times(fn: Fn, iters: int) -> dict[str, float]:
    """``e2e_us``: median host time of call + synchronize; ``throughput_us``: host time per back-to-back call."""
    import torch

    torch.cuda.synchronize()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append((time.perf_counter() - t0) * 1e6)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    throughput = (time.perf_counter() - t0) * 1e6 / iters
    return {"e2e_us": float(np.median(samples)), "e2e_p90_us": float(np.percentile(samples, 90)),
            "throughput_us": throughput}


def copy_bandwidth_gbps(mib: int = 512, iters: int = 20) -> float:
    """Measured device-to-device copy bandwidth, GB/s (bytes read + written per second), with CUDA events
    around ``iters`` back-to-back copies (each ~0.25 ms on an H200, so host launches are hidden)."""
    import torch

    src = torch.empty(mib * 2**20, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        dst.copy_(src)
    end.record()
    end.synchronize()
    seconds = start.elapsed_time(end) / 1e3 / iters
    return 2 * src.numel() / seconds / 1e9

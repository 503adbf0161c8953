"""Energy per inference: pick a power meter, sample it in a background thread, integrate.

Method: measure the idle draw first (``measure_idle``), then run the workload for at least
``min_duration_s`` inside a :class:`PowerSampler`. The total energy comes from the meter's hardware
energy counter when it has one (NVML on Volta+, RAPL), else from trapezoid integration of the
sampled power (Jetson INA3221, tegrastats, older NVML). Energy above idle subtracts
``idle_power_w * duration``: the part the workload added. Joules per inference divide both by the
number of inferences. Each result names its meter, what that meter covers (``scope``) and caveats.

Meters ("auto" order): Jetson -> ina3221-hwmon, ina3221-iio, tegrastats; CUDA -> nvml;
CPU -> rapl. A meter that cannot read says why; only an explicitly requested one raises.

Example:
    >>> meter = pick_meter("auto", device="cpu")               # None here: no readable sensor
    >>> if meter is not None:                                  # doctest: +SKIP
    ...     r = measure_energy(meter, lambda: model(x), inferences_per_call=8,
    ...                        min_duration_s=5.0, idle_s=2.0)
    ...     print(r.joules_per_inference_above_idle, r.method)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edgec.bench.meters import (METERS, Ina3221HwmonMeter, Ina3221IioMeter, NvmlMeter, PowerMeter,
                                RaplMeter, TegrastatsMeter, parse_tegrastats_line)
from edgec.bench.meters.choose import describe_meters, list_meters, pick_meter
from edgec.errors import EdgecError

__all__ = [
    "EnergyResult", "Ina3221HwmonMeter", "Ina3221IioMeter", "METERS", "NvmlMeter", "PowerMeter",
    "PowerSampler", "RaplMeter", "TegrastatsMeter", "describe_meters", "list_meters",
    "measure_energy", "measure_idle", "parse_tegrastats_line", "pick_meter",
]


@dataclass
class EnergyResult:
    """Energy of one measured window. Watts, joules and seconds; ``trace`` is ``(t_s, W)`` pairs."""

    meter: str
    idle_power_w: float
    avg_power_w: float
    energy_j: float
    energy_above_idle_j: float
    joules_per_inference: float
    joules_per_inference_above_idle: float
    duration_s: float
    samples: int
    trace: list[tuple[float, float]]
    rails_avg_w: dict[str, float]
    method: str  # "energy counter" | "integrated power (trapezoid)"
    scope: str = ""
    inferences: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self, include_trace: bool = True) -> dict[str, Any]:
        """JSON-ready dict (``trace`` as ``[t, W]`` lists; dropped with ``include_trace=False``).

        Example:
            >>> r = EnergyResult("x", 1, 2, 4, 2, 1, .5, 2, 3, [(0.0, 2.0)], {}, "energy counter")
            >>> r.to_dict()["trace"], "trace" in r.to_dict(include_trace=False)
            ([[0.0, 2.0]], False)
        """
        out = asdict(self)
        out["trace"] = [[t, w] for t, w in self.trace]
        if not include_trace:
            del out["trace"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnergyResult:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (old readers, new fields)."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["trace"] = [(float(t), float(w)) for t, w in data.get("trace", [])]
        return cls(**kwargs)


def _trapezoid(points: list[tuple[float, float]]) -> float:
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(points, points[1:]))


class PowerSampler:
    """Context manager: reads ``meter`` every ``interval_s`` on a daemon thread during the block.

    One reading is taken synchronously on entry and one on exit, so the window is exactly the
    block. Sampling every 10-50 ms is plenty for INA3221 and RAPL; NVML's power reading is itself a
    1 s average on Ampere+, so its trace is smooth whatever the interval.

    Example:
        >>> with PowerSampler(meter, interval_s=0.02) as sampler:      # doctest: +SKIP
        ...     run_model_for_5_seconds()
        >>> sampler.result(inferences=1200, idle_power_w=4.1).joules_per_inference  # doctest: +SKIP
    """

    def __init__(self, meter: PowerMeter, interval_s: float = 0.02):
        if interval_s <= 0:
            raise EdgecError(f"power sampling interval must be > 0 s, got {interval_s}")
        self.meter = meter
        self.interval_s = interval_s
        self._readings: list[tuple[float, float | None, float | None, dict[str, float]]] = []
        self._errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def _take(self) -> None:
        before = time.perf_counter()
        try:
            power, energy, rails = self.meter.sample()
        except Exception as exc:  # a flaky I2C read must not kill the run; it is reported
            self._errors.append(f"{type(exc).__name__}: {exc}")
            return
        t = (before + time.perf_counter()) / 2 - self._t0  # the middle of the read
        self._readings.append((t, power, energy, rails))

    def _run(self) -> None:
        due = time.perf_counter()
        while True:
            due += self.interval_s
            now = time.perf_counter()
            if due < now:  # fell behind (slow read): skip missed ticks rather than burst
                due = now
            if self._stop.wait(due - now):
                return
            self._take()

    def __enter__(self) -> PowerSampler:
        self._readings, self._errors = [], []
        self._stop.clear()
        self._t0 = time.perf_counter()
        self._take()
        self._thread = threading.Thread(target=self._run, daemon=True, name="edgec-power-sampler")
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._take()

    def result(self, inferences: int, idle_power_w: float = 0.0) -> EnergyResult:
        """Integrate the window; divide by ``inferences``; subtract ``idle_power_w * duration``."""
        readings = self._readings
        if len(readings) < 2:
            raise EdgecError(
                f"the power meter '{self.meter.name}' gave {len(readings)} reading(s); at least 2 "
                "are needed", hint="; ".join(self._errors[-3:]) or "measure for longer")
        if inferences < 1:
            raise EdgecError(f"energy per inference needs inferences >= 1, got {inferences}")
        powers = [(t, p) for t, p, _, _ in readings if p is not None]
        energies = [(t, e) for t, _, e, _ in readings if e is not None]
        notes = list(self.meter.notes)
        if len(energies) >= 2:
            method = "energy counter"
            (t0, e0), (t1, e1) = energies[0], energies[-1]
            energy, duration = e1 - e0, t1 - t0
            trace = powers if len(powers) >= 2 else [
                ((ta + tb) / 2, (eb - ea) / (tb - ta))
                for (ta, ea), (tb, eb) in zip(energies, energies[1:]) if tb > ta]
        elif len(powers) >= 2:
            method = "integrated power (trapezoid)"
            energy, duration, trace = _trapezoid(powers), powers[-1][0] - powers[0][0], powers
        else:
            raise EdgecError(f"the power meter '{self.meter.name}' returned neither power nor "
                             "energy readings")
        rails_avg = self._rails_average()
        above = energy - idle_power_w * duration
        if self._errors:
            notes.append(f"{len(self._errors)} reading(s) failed (last: {self._errors[-1]})")
        if above < 0:
            notes.append("energy above idle is negative: the workload's draw is within the noise "
                         "of the idle baseline")
        update = self.meter.update_interval_s
        if update and duration < 5 * update:
            notes.append(f"the window ({duration:.2f} s) is short against the sensor's "
                         f"{update:g} s update period: measure for longer")
        return EnergyResult(
            meter=self.meter.name, idle_power_w=float(idle_power_w),
            avg_power_w=energy / duration if duration > 0 else 0.0, energy_j=energy,
            energy_above_idle_j=above, joules_per_inference=energy / inferences,
            joules_per_inference_above_idle=above / inferences, duration_s=duration,
            samples=len(readings), trace=[(float(t), float(w)) for t, w in trace],
            rails_avg_w=rails_avg, method=method, scope=self.meter.scope,
            inferences=inferences, notes=notes)

    def _rails_average(self) -> dict[str, float]:
        names = {name for *_, rails in self._readings for name in rails}
        out = {}
        for name in sorted(names):
            points = [(t, rails[name]) for t, _, _, rails in self._readings if name in rails]
            span = points[-1][0] - points[0][0]
            out[name] = _trapezoid(points) / span if span > 0 else points[0][1]
        return out


def measure_idle(meter: PowerMeter, seconds: float = 1.0, interval_s: float = 0.02) -> float:
    """Average power (W) over ``seconds`` of doing nothing: the baseline to subtract.

    Example:
        >>> measure_idle(pick_meter("rapl"), seconds=2.0)          # doctest: +SKIP
        11.8
    """
    if seconds <= 0:
        raise EdgecError(f"idle measurement needs seconds > 0, got {seconds}")
    with PowerSampler(meter, interval_s) as sampler:
        time.sleep(seconds)
    return sampler.result(inferences=1).avg_power_w


def measure_energy(meter: PowerMeter, fn: Callable[[], object], *, inferences_per_call: int,
                   min_duration_s: float, idle_s: float, interval_s: float = 0.02,
                   warmup_calls: int = 1, min_calls: int = 1,
                   synchronize: Callable[[], object] | None = None) -> EnergyResult:
    """Idle baseline for ``idle_s`` (skipped at 0), warm-up, then call ``fn`` until both
    ``min_calls`` and ``min_duration_s`` are reached while sampling ``meter``.

    ``fn`` must finish its work before returning, or pass ``synchronize`` (e.g.
    ``torch.cuda.synchronize``), which is called before the window closes. Run this as its own pass,
    not while timing latency: the sampler thread costs a little CPU.

    Example:
        >>> r = measure_energy(meter, lambda: runner.run(feeds), inferences_per_call=1,
        ...                    min_duration_s=5.0, idle_s=2.0)           # doctest: +SKIP
        >>> r.joules_per_inference_above_idle                             # doctest: +SKIP
        0.0123
    """
    if inferences_per_call < 1 or min_duration_s < 0 or idle_s < 0 or min_calls < 1:
        raise EdgecError("energy settings out of range: inferences_per_call and min_calls must "
                         "be >= 1, min_duration_s and idle_s >= 0",
                         hint=f"got inferences_per_call={inferences_per_call}, min_calls="
                              f"{min_calls}, min_duration_s={min_duration_s}, idle_s={idle_s}")
    idle = measure_idle(meter, idle_s, interval_s) if idle_s > 0 else 0.0
    for _ in range(warmup_calls):
        fn()
    if synchronize is not None:
        synchronize()
    calls = 0
    with PowerSampler(meter, interval_s) as sampler:
        start = time.perf_counter()
        while calls < min_calls or time.perf_counter() - start < min_duration_s:
            fn()
            calls += 1
        if synchronize is not None:
            synchronize()
    result = sampler.result(calls * inferences_per_call, idle)
    if idle_s == 0:
        result.notes.append("idle power was not measured (idle_s=0): 'above idle' is the total")
    return result

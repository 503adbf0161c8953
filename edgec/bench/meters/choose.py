"""Choosing a power meter: list them all, describe why each can or cannot read, pick one.

"auto" order: Jetson -> ina3221-hwmon, ina3221-iio, tegrastats (on a Jetson whatever the device:
NVML does not exist there and the board rails cover CPU work too); CUDA -> nvml; CPU -> rapl; no
device given -> nvml, rapl. Only an explicitly named meter raises when it cannot read.

Example:
    >>> pick_meter("off") is None
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from edgec.bench.meters import METERS, NvmlMeter, PowerMeter, nvml_target_for_cuda_index
from edgec.console import warn
from edgec.errors import EdgecError, MissingDependencyError
from edgec.machine import is_jetson
from edgec.registry import Registry

__all__ = ["describe_meters", "list_meters", "pick_meter"]

_NAMES: Registry[type[PowerMeter]] = Registry(
    "power meter", error=EdgecError,
    on_unknown=lambda spec, best, valid: EdgecError(
        f"unknown power meter {spec!r}",
        hint=(f"did you mean '{best}'? " if best else "") + "choose one of: auto, off, " + ", ".join(valid)))
for _name, _cls in METERS.items():
    _NAMES.register(_name, _cls)
_AUTO = {"jetson": ("ina3221-hwmon", "ina3221-iio", "tegrastats"), "cuda": ("nvml",),
         "cpu": ("rapl",), None: ("nvml", "rapl")}


def _make(name: str, device: str | None, root: Path) -> PowerMeter:
    if name == "nvml":
        index = 0
        if device and ":" in device and device.split(":", 1)[1].isdigit():
            index = int(device.split(":", 1)[1])
        return NvmlMeter(nvml_target_for_cuda_index(index))
    return _NAMES.get(name)(root=root)  # type: ignore[call-arg]


def list_meters(root: Path = Path("/")) -> list[PowerMeter]:
    """One instance of every meter (nothing read yet); call ``available()`` on each, then close.

    Example:
        >>> [m.name for m in list_meters()]
        ['ina3221-hwmon', 'ina3221-iio', 'tegrastats', 'nvml', 'rapl']
    """
    return [_make(name, None, Path(root)) for name in METERS]


def describe_meters(root: Path = Path("/")) -> list[dict[str, Any]]:
    """``{name, ok, reason, scope, hint}`` for every meter, closing each (for ``edgec doctor``).

    Example:
        >>> {row["name"]: row["ok"] for row in describe_meters()}["rapl"]     # doctest: +SKIP
        False
    """
    rows = []
    for meter in list_meters(root):
        try:
            ok, reason = meter.available()
            rows.append({"name": meter.name, "ok": ok, "reason": reason, "scope": meter.scope,
                         "hint": meter.hint})
        finally:
            meter.close()
    return rows


def _device_kind(device: str | None, root: Path) -> str | None:
    if is_jetson(root):
        return "jetson"  # NVML does not exist there, and the board rails cover CPU work too
    if device is None:
        return None
    base = device.split(":", 1)[0].lower()
    if base in ("cuda", "gpu"):
        return "cuda"
    if base in ("cpu", "jetson"):
        return base
    raise EdgecError(f"unknown device {device!r} for energy measurement",
                     hint="use cpu, cuda, cuda:N or jetson")


def pick_meter(spec: str = "auto", *, device: str | None = None,
               root: Path = Path("/")) -> PowerMeter | None:
    """The meter to use: ``"off"`` -> None; ``"auto"`` -> the first readable one for ``device``
    (None, with a warning naming each reason, if none reads); a meter name -> that meter, or
    :class:`EdgecError` saying why it cannot read and what to do.

    Example:
        >>> pick_meter("off") is None
        True
        >>> pick_meter("auto", device="cpu")                    # doctest: +SKIP
        <RaplMeter 'rapl' CPU package energy (RAPL package-0)>
    """
    spec = (spec or "auto").strip().lower()
    root = Path(root)
    if spec in ("off", "none", "false", "0"):
        return None
    if spec != "auto":
        _NAMES.canonical(spec)  # an unknown name: the closest one and every valid one
        meter = _make(spec, device, root)
        ok, why = meter.available()
        if ok:
            return meter
        meter.close()
        if meter.missing is not None:
            raise MissingDependencyError(meter.missing[0], meter.missing[1],
                                         f"the '{spec}' power meter ({why})")
        raise EdgecError(f"power meter '{spec}' cannot read: {why}", hint=meter.hint)
    reasons = []
    for name in _AUTO[_device_kind(device, root)]:
        meter = _make(name, device, root)
        ok, why = meter.available()
        if ok:
            return meter
        meter.close()
        reasons.append(f"{name}: {why}")

    # escape(): "[gpu]" in "pip install 'edgec[gpu]'" would otherwise be read as rich markup.
    warn(escape("no power meter can read on this machine, so energy is not measured ("
                + "; ".join(reasons) + ")"))
    return None

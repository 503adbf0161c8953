"""The power-meter interface every sensor implements, and the sysfs helpers they share.

A meter reads one of two things (or both): an instantaneous **power** in watts, or a monotonic
**energy counter** in joules. ``PowerSampler`` (in ``edgec.bench.energy``) prefers the counter
when there is one (integrating hardware beats integrating samples) and otherwise integrates the
power readings with the trapezoid rule.

A meter never raises from ``available()``: it answers ``(False, why)``, and ``why`` names the file,
module or permission that is missing. Constructing a meter is free (no I/O, no imports).

Example:
    >>> class Constant(PowerMeter):
    ...     name = "constant"
    ...     def available(self): return True, ""
    ...     def read_power_w(self): return 5.0
    >>> Constant().sample()
    (5.0, None, {})
"""

from __future__ import annotations

import errno
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["PowerMeter", "TOTAL_RAILS", "describe_os_error", "read_sysfs", "total_of_rails"]

# Rails that already measure the whole module's input, so they are the total rather than one term
# of a sum: VDD_IN on Orin NX/Nano, Xavier NX and TX2; POM_5V_IN on the original Jetson Nano
# (JetPack 4). AGX Orin and AGX Xavier have no such rail and their total is the sum of rails.
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")


def read_sysfs(path: Path) -> str:
    """Read a sysfs attribute as stripped text. Raises ``OSError`` (``PermissionError`` for EACCES).

    Example:
        >>> read_sysfs(Path("/proc/sys/kernel/ostype"))            # doctest: +SKIP
        'Linux'
    """
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read().strip()


def describe_os_error(path: Path, exc: OSError) -> str:
    """One phrase saying why ``path`` could not be read.

    Example:
        >>> describe_os_error(Path("/x"), PermissionError(13, "Permission denied"))
        'permission denied reading /x'
    """
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied reading {path}"
    if isinstance(exc, FileNotFoundError):
        return f"{path} does not exist"
    return f"cannot read {path}: {exc.strerror or exc}"


def total_of_rails(rails_w: dict[str, float]) -> float:
    """The board total from per-rail watts: the input rail when there is one, else the sum.

    Example:
        >>> total_of_rails({"VDD_IN": 7.0, "VDD_SOC": 2.0})     # VDD_IN already includes VDD_SOC
        7.0
        >>> total_of_rails({"VDD_GPU_SOC": 3.0, "VDD_CPU_CV": 1.5})
        4.5
    """
    for name in TOTAL_RAILS:
        if name in rails_w:
            return rails_w[name]
    return float(sum(rails_w.values()))


def total_scope(rail_names: list[str]) -> str:
    """Human phrase for what a rail-based total covers."""
    for name in TOTAL_RAILS:
        if name in rail_names:
            return f"module input rail {name}"
    return "sum of rails " + " + ".join(rail_names) + " (no input rail on this board)"


class PowerMeter(ABC):
    """One power sensor. Subclasses set ``name`` and implement ``available`` and a reading.

    ``scope`` says what the figure covers (a GPU board, CPU packages, a Jetson module input);
    ``update_interval_s`` is the sensor's own refresh/averaging period when known, so a result can
    warn when the measured window is too short for it; ``notes`` are caveats copied into results;
    ``hint`` says what to do when the meter cannot read; ``missing`` is ``(package, extra)`` when
    the reason is an optional Python package that is not installed.
    """

    name: ClassVar[str] = "meter"
    hint: ClassVar[str] = ""
    update_interval_s: float | None = None

    def __init__(self) -> None:
        self.scope = ""
        self.notes: list[str] = []
        self.missing: tuple[str, str] | None = None

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """``(True, "")`` when a reading works here, else ``(False, why)``. Never raises."""

    @abstractmethod
    def read_power_w(self) -> float | None:
        """Instantaneous total power in watts, or ``None`` when this meter only counts energy."""

    def read_energy_j(self) -> float | None:
        """Monotonic energy counter in joules (wrap-around handled), or ``None`` if power-only."""
        return None

    def rails(self) -> dict[str, float]:
        """Per-rail power in watts, for meters that have rails (Jetson); else ``{}``."""
        return {}

    def sample(self) -> tuple[float | None, float | None, dict[str, float]]:
        """One reading as ``(power_w, energy_j, rails_w)``; meters override it to read once."""
        return self.read_power_w(), self.read_energy_j(), {}

    def close(self) -> None:
        """Release what the meter holds (subprocess, NVML handle). Safe to call twice."""

    def __enter__(self) -> PowerMeter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}{' ' + self.scope if self.scope else ''}>"

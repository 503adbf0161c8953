"""CPU package energy from RAPL through the Linux powercap interface (Intel, and AMD Zen).

Layout: ``/sys/class/powercap/intel-rapl:N/`` is package N (``name`` = ``package-N``) with
``energy_uj`` (microjoules) that wraps to 0 after ``max_energy_range_uj``; its subzones
``intel-rapl:N:M`` (core, uncore, dram) are parts of the package or separate domains and are
skipped so nothing is counted twice. Recent kernels expose AMD Zen CPUs through the same
``intel-rapl`` control type; ``intel-rapl-mmio:N`` duplicates package N and is used only when it is
all there is. A laptop's ``psys`` zone (whole SoC) is used only when there is no package zone.

Since Linux 5.10, ``energy_uj`` is readable by root only (CVE-2020-8694, "Platypus").

Example:
    >>> meter = RaplMeter()
    >>> meter.available()                                   # doctest: +SKIP
    (False, 'permission denied reading /sys/class/powercap/intel-rapl:0/energy_uj: ...')
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from edgec.bench.meters.base import PowerMeter, describe_os_error, read_sysfs

__all__ = ["RaplMeter"]

_ZONE_RE = re.compile(r"(?P<control>[a-z][a-z0-9_-]*):(?P<index>\d+)")  # top level: one index


class RaplMeter(PowerMeter):
    """Sum of the CPU package energy counters, with wrap-around handled per package."""

    name = "rapl"
    hint = ("RAPL counters are root-only on Linux >= 5.10: run as root, or allow reading with "
            "`sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj` (until reboot) or a udev "
            "rule; in a VM or container the host must expose /sys/class/powercap")
    update_interval_s = 0.001  # RAPL updates its counters about every millisecond

    def __init__(self, root: Path = Path("/")):
        super().__init__()
        self.root = Path(root)
        self.notes = ["RAPL measures the CPU package(s) only, not DRAM, disks or the power supply"]
        self._zones: list[Path] | None = None
        self._why = ""
        self._max_uj: dict[Path, int] = {}
        self._last_uj: dict[Path, int] = {}
        self._total_uj = 0
        self._lock = threading.Lock()

    def _find_zones(self) -> tuple[list[Path], str]:
        base = self.root / "sys/class/powercap"
        if not base.is_dir():
            return [], (f"{base} does not exist (a kernel without powercap/RAPL, a VM or container "
                        "that does not expose it, or a CPU without RAPL such as ARM)")
        named: list[tuple[Path, str, bool]] = []
        for zone in sorted(base.iterdir()):
            match = _ZONE_RE.fullmatch(zone.name)
            if not match or not (zone / "energy_uj").exists():
                continue
            try:
                domain = read_sysfs(zone / "name")
            except OSError:
                continue
            named.append((zone, domain, "mmio" in match.group("control")))
        for wanted in ("package", "psys"):
            for mmio in (False, True):
                zones = [z for z, d, m in named if d.startswith(wanted) and m == mmio]
                if zones:
                    return zones, ""
        if not named:
            return [], (f"no RAPL zone with an energy counter under {base} (load the driver: "
                        "sudo modprobe intel_rapl_msr)")
        return [], f"no package-level RAPL zone under {base} (found: {[d for _, d, _ in named]})"

    def available(self) -> tuple[bool, str]:
        if self._zones is None:
            self._zones, self._why = self._find_zones()
        if not self._zones:
            return False, self._why
        for zone in self._zones:
            path = zone / "energy_uj"
            try:
                int(read_sysfs(path))
            except PermissionError as exc:
                return False, (describe_os_error(path, exc) + ": RAPL energy counters are "
                               "root-only on Linux >= 5.10 (CVE-2020-8694)")
            except (OSError, ValueError) as exc:
                return False, f"cannot read {path}: {exc}"
            try:
                self._max_uj[zone] = int(read_sysfs(zone / "max_energy_range_uj"))
            except (OSError, ValueError):
                self._max_uj[zone] = 2**32 - 1  # the MSR counter's 32-bit range, in uJ units
        names = ", ".join(read_sysfs(z / "name") for z in self._zones)
        self.scope = f"CPU package energy (RAPL {names})"
        return True, ""

    def read_energy_j(self) -> float | None:
        """Joules since this meter's first read, summed over packages; monotonic across wraps."""
        if self._zones is None or not self._max_uj:
            ok, why = self.available()
            if not ok:
                raise RuntimeError(f"RAPL meter cannot read: {why}")
        with self._lock:
            for zone in self._zones or []:
                raw = int(read_sysfs(zone / "energy_uj"))
                last = self._last_uj.get(zone)
                if last is not None:
                    delta = raw - last
                    if delta < 0:  # the counter wrapped past max_energy_range_uj back to 0
                        delta += self._max_uj[zone]
                    self._total_uj += delta
                self._last_uj[zone] = raw
            return self._total_uj / 1e6

    def read_power_w(self) -> float | None:
        return None  # energy only: the sampler derives power from counter differences

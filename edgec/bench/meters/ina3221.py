"""Jetson board power from the INA3221 monitors' sysfs files (no root, no subprocess).

Two kernel drivers expose them, found under ``/sys/bus/i2c/devices/*/`` whose ``name`` contains
``ina3221``:

* **hwmon** (JetPack 5/6, mainline ``ina3221`` driver): ``hwmon/hwmon*/in{N}_label`` names the rail,
  ``in{N}_input`` is the bus voltage in mV and ``curr{N}_input`` the current in mA, so a rail's
  power is mV * mA / 1000 mW. Rail channels are N = 1..3; ``in4..6_input`` are shunt voltages and
  ``in7`` ("sum of shunt voltages") is the summation channel: neither has a ``curr{N}_input`` and
  neither is a rail. Unused inputs are labelled ``NC`` on NVIDIA's device trees.
* **iio** (JetPack 4, NVIDIA's ``ina3221x`` driver): ``iio:device*/rail_name_{N}`` names the rail
  and ``in_power{N}_input`` is its power in mW.

Total: the ``VDD_IN`` (or Nano's ``POM_5V_IN``) input rail when the board has one (Orin NX/Nano,
Xavier NX, Nano), else the sum of the rails (AGX Orin: VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0 +
VDDQ_VDD2_1V8AO). Neither covers the carrier board.

Example:
    >>> meter = Ina3221HwmonMeter()
    >>> meter.available()                                  # doctest: +SKIP
    (True, '')
    >>> meter.read_power_w(), meter.rails()                # doctest: +SKIP
    (7.41, {'VDD_IN': 7.41, 'VDD_CPU_GPU_CV': 2.1, 'VDD_SOC': 1.9})
"""

from __future__ import annotations

import re
from pathlib import Path

from edgec.bench.meters.base import (PowerMeter, describe_os_error, read_sysfs, total_of_rails,
                                     total_scope)

__all__ = ["Ina3221HwmonMeter", "Ina3221IioMeter", "find_ina3221_devices"]

_HINT = ("this meter exists only on a Jetson with INA3221 monitors (/sys/bus/i2c/devices); "
         "elsewhere choose 'auto' (NVML on NVIDIA GPUs, RAPL on x86 CPUs)")


def find_ina3221_devices(root: Path = Path("/")) -> tuple[list[Path], str]:
    """I2C device folders whose ``name`` contains ``ina3221``, and why the list is empty.

    Example:
        >>> find_ina3221_devices(Path("/nonexistent"))[1]
        '/nonexistent/sys/bus/i2c/devices does not exist (not a Jetson, or sysfs is not mounted)'
    """
    base = root / "sys/bus/i2c/devices"
    if not base.is_dir():
        return [], f"{base} does not exist (not a Jetson, or sysfs is not mounted)"
    found = []
    for dev in sorted(base.iterdir()):
        try:
            if "ina3221" in read_sysfs(dev / "name").lower():
                found.append(dev)
        except OSError:
            continue  # most I2C devices are something else; an unreadable name is not ours
    if not found:
        return [], (f"no INA3221 power monitor under {base} (not a Jetson, or a board without "
                    "one such as the Jetson Nano 2GB)")
    return found, ""


class _RailMeter(PowerMeter):
    """Shared logic: discover ``{rail: files}`` once, read each rail's watts, total them."""

    hint = _HINT
    update_interval_s = None  # the driver's conversion time x averaging; ms-scale on Jetson

    def __init__(self, root: Path = Path("/")):
        super().__init__()
        self.root = Path(root)
        self._rails: dict[str, tuple[Path, ...]] | None = None
        self._why = ""

    def _discover(self) -> tuple[dict[str, tuple[Path, ...]], str]:
        raise NotImplementedError

    def _rail_w(self, files: tuple[Path, ...]) -> float:
        raise NotImplementedError

    def _found(self) -> dict[str, tuple[Path, ...]]:
        if self._rails is None:
            self._rails, self._why = self._discover()
            if self._rails:
                self.scope = "Jetson " + total_scope(list(self._rails))
        return self._rails

    def available(self) -> tuple[bool, str]:
        rails = self._found()
        if not rails:
            return False, self._why
        label, files = next(iter(rails.items()))
        for path in files:
            try:
                float(read_sysfs(path))
            except OSError as exc:
                return False, describe_os_error(path, exc) + f" (rail {label}); run as root"
            except ValueError:
                return False, f"{path} does not hold a number"
        return True, ""

    def rails(self) -> dict[str, float]:
        return {label: self._rail_w(files) for label, files in self._found().items()}

    def read_power_w(self) -> float | None:
        return total_of_rails(self.rails())

    def sample(self) -> tuple[float | None, float | None, dict[str, float]]:
        rails = self.rails()  # one pass over the files gives both the total and the rails
        return total_of_rails(rails), None, rails


def _unique(label: str, dev: Path, rails: dict[str, tuple[Path, ...]]) -> str:
    return label if label not in rails else f"{label}@{dev.name}"


class Ina3221HwmonMeter(_RailMeter):
    """INA3221 rails through the hwmon driver (JetPack 5/6). See the module docstring."""

    name = "ina3221-hwmon"

    def _discover(self) -> tuple[dict[str, tuple[Path, ...]], str]:
        devices, why = find_ina3221_devices(self.root)
        rails: dict[str, tuple[Path, ...]] = {}
        folders = [hw for dev in devices for hw in sorted(dev.glob("hwmon/hwmon*"))]
        if devices and not folders:
            return {}, (f"INA3221 found at {devices[0]} but it has no hwmon/ folder (JetPack 4's "
                        "iio driver: use the 'ina3221-iio' meter)")
        for hw in folders:
            labels = sorted(hw.glob("in*_label"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
            for label_file in labels:
                match = re.fullmatch(r"in(\d+)_label", label_file.name)
                try:
                    label = read_sysfs(label_file)
                except OSError:
                    continue
                if not match or not label or label.upper() == "NC":
                    continue  # unconnected input
                n = int(match.group(1))
                volt, curr = hw / f"in{n}_input", hw / f"curr{n}_input"
                if label.lower().startswith("sum of") or not curr.exists():
                    continue  # the summation channel (in7) and shunt voltages are not rails
                rails[_unique(label, hw.parent.parent, rails)] = (volt, curr)
        if folders and not rails:
            why = f"INA3221 hwmon folders {[str(f) for f in folders]} have no labelled rail channel"
        return rails, why

    def _rail_w(self, files: tuple[Path, ...]) -> float:
        millivolts, milliamps = (float(read_sysfs(p)) for p in files)
        return millivolts * milliamps / 1e6  # mV * mA = uW


class Ina3221IioMeter(_RailMeter):
    """INA3221 rails through NVIDIA's iio driver (JetPack 4: Nano, TX2, Xavier)."""

    name = "ina3221-iio"

    def _discover(self) -> tuple[dict[str, tuple[Path, ...]], str]:
        devices, why = find_ina3221_devices(self.root)
        rails: dict[str, tuple[Path, ...]] = {}
        folders = [io for dev in devices for io in sorted(dev.glob("iio*device*")) if io.is_dir()]
        if devices and not folders:
            return {}, (f"INA3221 found at {devices[0]} but it has no iio:device folder "
                        "(JetPack 5+ hwmon driver: use the 'ina3221-hwmon' meter)")
        for io in folders:
            for name_file in sorted(io.glob("rail_name_*")):
                n = name_file.name.rsplit("_", 1)[-1]
                try:
                    label = read_sysfs(name_file)
                except OSError:
                    continue
                power = io / f"in_power{n}_input"
                if label and label.upper() != "NC" and power.exists():
                    rails[_unique(label, io.parent, rails)] = (power,)
        if folders and not rails:
            why = (f"INA3221 iio folders {[str(f) for f in folders]} have no "
                   "rail_name_N/in_powerN_input pair")
        return rails, why

    def _rail_w(self, files: tuple[Path, ...]) -> float:
        return float(read_sysfs(files[0])) / 1e3  # mW

"""NVIDIA desktop/server GPU power through NVML (``pip install 'edgec[gpu]'``: nvidia-ml-py).

``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver was loaded; Volta and newer) is the
preferred source: an energy counter integrated by the hardware. Older GPUs fall back to
``nvmlDeviceGetPowerUsage`` (mW) integrated by the sampler. On Ampere and newer, the power reading
is a 1-second moving average, so it lags and smooths short bursts: the power *trace* is blurred even
when the energy total (from the counter) is not. NVML covers the GPU board, not the host CPU.

NVML does not exist on Jetson (use the INA3221 meters there). ``pynvml`` is imported only when the
meter is asked whether it can read.

Example:
    >>> with NvmlMeter(index=0) as meter:                      # doctest: +SKIP
    ...     ok, why = meter.available()
    ...     meter.read_energy_j(), meter.read_power_w()
    (812345.678, 61.2)
"""

from __future__ import annotations

import importlib
from typing import Any

from edgec.bench.meters.base import PowerMeter
from edgec.machine import nvml_target_for_cuda_index  # a machine fact: machine.py describes the GPU with it

__all__ = ["NvmlMeter", "nvml_target_for_cuda_index"]


class NvmlMeter(PowerMeter):
    """Energy (preferred) or power of one NVIDIA GPU; ``device`` is an NVML index or a GPU UUID."""

    name = "nvml"
    hint = ("install NVML's Python binding with: pip install 'edgec[gpu]' (nvidia-ml-py), and run "
            "where the NVIDIA driver is loaded (nvidia-smi works); on Jetson use 'ina3221-hwmon'")
    update_interval_s = 1.0  # the power reading's averaging window on Ampere+; see module docstring

    def __init__(self, device: int | str = 0):
        super().__init__()
        self.device = device
        self.gpu_name: str | None = None
        self._nvml: Any = None
        self._handle: Any = None
        self._has_energy = False
        self._has_power = False
        self._checked: tuple[bool, str] | None = None

    def available(self) -> tuple[bool, str]:
        if self._checked is None:
            self._checked = self._probe()
        return self._checked

    def _probe(self) -> tuple[bool, str]:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            self.missing = ("nvidia-ml-py", "gpu")
            return False, "pynvml is not installed (pip install 'edgec[gpu]' installs nvidia-ml-py)"
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...
            return False, (f"NVML cannot start: {exc} (no NVIDIA driver loaded here; NVML does not "
                           "exist on Jetson)")
        self._nvml = nvml
        try:
            if isinstance(self.device, str):
                self._handle = nvml.nvmlDeviceGetHandleByUUID(self.device)
            else:
                count = nvml.nvmlDeviceGetCount()
                if not 0 <= self.device < count:
                    return False, f"NVML sees {count} GPU(s); there is no GPU index {self.device}"
                self._handle = nvml.nvmlDeviceGetHandleByIndex(self.device)
            name = nvml.nvmlDeviceGetName(self._handle)
            self.gpu_name = name.decode() if isinstance(name, bytes) else str(name)
        except Exception as exc:
            return False, f"NVML cannot open GPU {self.device}: {exc}"
        errors = []
        for attr, call in (("_has_energy", "nvmlDeviceGetTotalEnergyConsumption"),
                           ("_has_power", "nvmlDeviceGetPowerUsage")):
            try:
                getattr(nvml, call)(self._handle)
                setattr(self, attr, True)
            except Exception as exc:  # NVMLError_NotSupported on GPUs without the sensor
                errors.append(f"{call}: {exc}")
        if not (self._has_energy or self._has_power):
            return False, (f"NVML supports neither energy nor power readings on {self.gpu_name} "
                           f"({'; '.join(errors)})")
        self.scope = f"GPU board power of {self.gpu_name} (NVML device {self.device})"
        if self._has_power:
            self.notes = ["NVML power readings are a 1 s moving average on Ampere and newer GPUs: "
                          "the trace is smoothed" + ("; the total comes from the hardware energy "
                                                     "counter" if self._has_energy else "")]
        return True, ""

    def _ready(self) -> Any:
        if not self.available()[0]:
            raise RuntimeError(f"NVML meter cannot read: {self.available()[1]}")
        return self._nvml

    def read_energy_j(self) -> float | None:
        nvml = self._ready()
        if not self._has_energy:
            return None
        return nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1e3  # mJ -> J

    def read_power_w(self) -> float | None:
        nvml = self._ready()
        if not self._has_power:
            return None
        return nvml.nvmlDeviceGetPowerUsage(self._handle) / 1e3  # mW -> W

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass  # already shut down or the driver went away: nothing left to release
        self._nvml, self._handle, self._checked = None, None, None

"""Moved to :mod:`edgec.machine` (compression, kernels and benchmarks all describe the machine, so it
sits below them); this name keeps scripts that import ``edgec.bench.machine`` working."""

from __future__ import annotations

from edgec.machine import (cpu_info, describe_machine, is_jetson, jetson_clock_warning, jetson_info,
                           machine_fingerprint, machine_mismatches, package_versions, temperatures)

__all__ = ["cpu_info", "describe_machine", "is_jetson", "jetson_clock_warning", "jetson_info",
           "machine_fingerprint", "machine_mismatches", "package_versions", "temperatures"]

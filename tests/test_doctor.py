"""``edgec doctor``: describes this machine without raising, explains every gap, and its TensorRT
capability probe and Jetson parsing are right on stand-ins and fixture trees.

This machine has no GPU and no TensorRT, and has nvcc: the tests below that depend on that say so
and skip with the reason elsewhere.
"""

from __future__ import annotations

import enum
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from edgec import doctor
from edgec.doctor import SCHEMA, Check, diagnose, render, tensorrt_capabilities, tensorrt_dla_cores

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def report() -> dict:
    return diagnose()


def _check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# --- this machine ----------------------------------------------------------------------------------

def test_report_schema_and_sections(report):
    again = json.loads(json.dumps(report))
    assert again["schema"] == SCHEMA and again["edgec"] and again["python"] and again["platform"]
    assert again["cpu"]["cores"] >= 1 and "avx2" in again["cpu"]["flags"]
    for section in ("torch", "gpu", "onnxruntime", "tensorrt", "pycuda", "nvml", "nvcc"):
        assert isinstance(again[section], dict), section
    assert "CPUExecutionProvider" in again["onnxruntime"]["providers"]
    assert again["torch"]["version"].startswith("2.")
    assert {"name", "ok", "detail", "hint", "required"} == set(again["checks"][0])
    assert [r["name"] for r in again["power_meters"]][-1] == "rapl"


def test_required_packages_are_ok_here(report):
    for name in ("python", "numpy", "torch", "onnx", "onnxruntime"):
        c = _check(report, name)
        assert c["ok"] and c["required"], c
    assert "CPUExecutionProvider" in _check(report, "onnxruntime")["detail"]


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here")
def test_missing_tensorrt_names_its_extra_and_jetpack(report):
    c = _check(report, "tensorrt")
    assert not c["ok"] and not c["required"] and "not installed" in c["detail"]
    assert "pip install 'edgec[trt]'" in c["hint"] and "JetPack" in c["hint"]
    assert report["tensorrt"] == {"installed": False}
    assert "tensorrt" not in sys.modules  # never imported when find_spec does not find it


def test_pycuda_gap_is_explained(report):
    c = _check(report, "pycuda")
    if importlib.util.find_spec("pycuda") is None:
        assert not c["ok"] and "pip install 'edgec[gpu]'" in c["hint"] and "driver" in c["hint"]
        assert report["pycuda"] == {"installed": False}
    elif not report["pycuda"]["importable"]:  # installed, but no libcuda.so.1 here
        assert not c["ok"] and "cannot load" in c["detail"] and "libcuda.so.1" in c["hint"]
    else:
        assert c["ok"] and _cuda_available()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) is not on PATH")
def test_nvcc_found_with_its_version(report):
    c = _check(report, "nvcc")
    assert c["ok"] and report["nvcc"]["path"] == shutil.which("nvcc")
    assert re.fullmatch(r"\d+\.\d+\.\d+", report["nvcc"]["version"]), report["nvcc"]


def test_gpu_check_matches_torch(report):
    c = _check(report, "cuda gpu")
    if _cuda_available():
        assert c["ok"] and report["gpu"]["devices"][0]["sm"].startswith("sm_")
    else:
        assert not c["ok"] and c["hint"] and not report["gpu"]["available"]
        if report["torch"]["cuda_build"] is None:
            assert "CPU-only build" in c["detail"] and "download.pytorch.org" in c["hint"]


def test_every_gap_has_a_hint(report):
    for c in report["checks"]:
        if not c["ok"]:
            assert c["hint"], c


def test_a_failing_probe_becomes_a_failed_check(monkeypatch):
    def broken():
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(doctor, "_onnxscript", broken)
    c = _check(diagnose(), "onnxscript")
    assert not c["ok"] and "driver exploded" in c["detail"] and c["hint"]


def test_torchvision_that_does_not_load_next_to_this_torch_is_reported(monkeypatch, tmp_path):
    """The known trap: PyPI's CUDA torchvision next to a CPU torch is installed but fails to import."""
    pkg = tmp_path / "torchvision"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    c = doctor._torchvision()
    assert not c.ok and "does not load next to torch" in c.detail and "torchvision::nms" in c.detail
    assert "built for this torch" in c.hint
    missing = doctor._found("no_such_vision_pkg", "x", "torchvision", "vision", "torchvision: model sources")
    assert not missing.ok and "edgec[vision]" in missing.hint


def test_render_returns_a_table_with_unmangled_hints(report):
    table = render(report)
    assert isinstance(table, Table) and len(table.rows) == len(report["checks"])
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "torch" in text and "onnxruntime" in text and f"edgec {report['edgec']} doctor" in text
    if not _check(report, "tensorrt")["ok"]:
        assert "edgec[trt]" in text  # not swallowed as rich markup


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgec", "doctor", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "250"})


def test_cli_doctor_text_and_json_on_this_machine():
    text = _cli()
    assert text.returncode == 0, text.stderr
    out = text.stdout + text.stderr
    assert "edgec" in out and "doctor" in out and "Traceback" not in out
    for name in ("torch", "onnxruntime", "tensorrt", "pycuda", "nvcc", "power meters"):
        assert name in out, name
    as_json = _cli("--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["schema"] == SCHEMA
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["torch"]["ok"] and checks["onnxruntime"]["ok"]
    if not HAS_TRT:
        assert "edgec[trt]" in out and not checks["tensorrt"]["ok"]
    if shutil.which("nvcc"):
        assert checks["nvcc"]["ok"]


# --- TensorRT capability probe, on stand-ins for the tensorrt module ---------------------------------

def _fake_tensorrt(version: str, builder_flags: tuple[str, ...], network_flags: tuple[str, ...],
                   calibrator: bool, dla_cores: int = 0) -> types.ModuleType:
    """A stand-in for ``import tensorrt`` with only the attributes the probe feature-tests."""
    fake = types.ModuleType("tensorrt")
    fake.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    fake.__version__ = version
    fake.BuilderFlag = types.SimpleNamespace(**{f: object() for f in builder_flags})
    fake.NetworkDefinitionCreationFlag = types.SimpleNamespace(**{f: object() for f in network_flags})
    fake.DeviceType = types.SimpleNamespace(GPU=object(), DLA=object())

    class ILogger:  # TensorRT's base logger class: edgec subclasses it (one logger per process)
        Severity = enum.IntEnum("Severity", {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4})

        def __init__(self):
            pass

    class Logger(ILogger):
        ERROR = ILogger.Severity.ERROR

        def __init__(self, severity):
            self.severity = severity

    class Builder:
        def __init__(self, logger):
            assert isinstance(logger, ILogger)
            self.num_DLA_cores = dla_cores

    fake.ILogger, fake.Logger, fake.Builder = ILogger, Logger, Builder
    if calibrator:
        fake.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {})
    return fake


def FakeTensorRT10() -> types.ModuleType:  # noqa: N802 - named like the class it stands in for
    """TensorRT 10.3 (JetPack 6) as documented: precision flags, strong typing, DLA on Orin."""
    return _fake_tensorrt("10.3.0", ("FP16", "INT8", "SPARSE_WEIGHTS", "GPU_FALLBACK"),
                          ("EXPLICIT_BATCH", "STRONGLY_TYPED"), calibrator=True, dla_cores=2)


def FakeTensorRT11() -> types.ModuleType:  # noqa: N802
    """TensorRT 11: precision flags and implicit INT8 calibration removed, always strongly typed."""
    return _fake_tensorrt("11.0.0.7", ("SPARSE_WEIGHTS", "GPU_FALLBACK"), ("STRONGLY_TYPED",),
                          calibrator=False)


def test_tensorrt_capabilities_trt10():
    caps = tensorrt_capabilities(FakeTensorRT10())
    assert caps == {"version": "10.3.0", "major": 10, "strongly_typed": True, "precision_flags": True,
                    "fp16_flag": True, "sparse_weights": True, "gpu_fallback": True,
                    "dla_device": True, "implicit_int8_calibration": True}


def test_tensorrt_capabilities_trt11():
    caps = tensorrt_capabilities(FakeTensorRT11())
    assert caps["major"] == 11 and caps["strongly_typed"] and caps["sparse_weights"]
    assert not caps["precision_flags"] and not caps["fp16_flag"]
    assert not caps["implicit_int8_calibration"]


def test_trt11_is_strongly_typed_whatever_the_deprecated_flag_says():
    """STRONGLY_TYPED is deprecated (ignored) in 11: every network is strongly typed, flag or not."""
    fake = _fake_tensorrt("11.1.0", ("SPARSE_WEIGHTS", "GPU_FALLBACK"), (), calibrator=False)
    caps = tensorrt_capabilities(fake)
    assert caps["strongly_typed"] is True and caps["precision_flags"] is False


def test_trt11_before_11_4_has_no_dla():
    """NVIDIA, "Working with DLA" (11.4.1): DLA was unavailable in TensorRT 11.0 through 11.3; DeviceType.DLA is still bound."""
    for version, dla in (("11.0.0.7", False), ("11.3.1", False), ("11.4.1", True)):
        fake = _fake_tensorrt(version, ("SPARSE_WEIGHTS", "GPU_FALLBACK"), ("STRONGLY_TYPED",), calibrator=False)
        assert tensorrt_capabilities(fake)["dla_device"] is dla, version
    assert tensorrt_capabilities(FakeTensorRT10())["dla_device"] is True


def test_tensorrt_check_says_strongly_typed_always_and_no_dla_on_11_0(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT11())
    report = diagnose()
    c = _check(report, "tensorrt")
    assert "strongly typed: always" in c["detail"] and "DLA: not in this TensorRT build" in c["detail"]
    assert report["tensorrt"]["dla_cores"] is None  # not queried


def test_tensorrt_capabilities_of_a_bare_module():
    caps = tensorrt_capabilities(types.ModuleType("tensorrt"))
    assert caps["version"] is None and caps["major"] is None
    assert not any(caps[k] for k in ("strongly_typed", "precision_flags", "sparse_weights"))


def test_dla_cores_from_the_builder():
    assert tensorrt_dla_cores(FakeTensorRT10()) == 2 and tensorrt_dla_cores(FakeTensorRT11()) == 0


@pytest.mark.parametrize("make, build", [(FakeTensorRT10, "weakly typed with INT8"),
                                         (FakeTensorRT11, "strongly typed only")])
def test_tensorrt_check_explains_the_build_mode(monkeypatch, make, build):
    monkeypatch.setitem(sys.modules, "tensorrt", make())
    report = diagnose()
    c = _check(report, "tensorrt")
    assert c["ok"] and build in c["detail"] and "sparse weights: yes" in c["detail"]
    assert report["tensorrt"]["installed"] and report["tensorrt"]["version"] == make().__version__
    if make is FakeTensorRT11:  # TensorRT 11.0: no DLA in the build, never queried (issue 16)
        assert report["tensorrt"]["dla_cores"] is None and "not in this TensorRT build" in c["detail"]
    elif not _cuda_available():  # DLA needs a builder, hence CUDA: not queried without a GPU
        assert report["tensorrt"]["dla_cores"] is None and "no GPU visible" in c["detail"]


# --- Jetson, on fixture trees (root is a parameter; the real /etc is never touched) -----------------

def _orin_tree(tmp_path: Path, pinned: bool) -> Path:
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text(
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    gpu = tmp_path / "sys/class/devfreq/17000000.gpu"
    gpu.mkdir(parents=True)
    low = "1020000000" if pinned else "306000000"
    for name, value in (("cur_freq", "1020000000"), ("min_freq", low), ("max_freq", "1020000000")):
        (gpu / name).write_text(value + "\n")
    return tmp_path


def _fake_nvpmodel(tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvpmodel").write_text("#!/bin/sh\necho 'NV Power Mode: 15W'\necho 0\n")
    (bin_dir / "nvpmodel").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ.get('PATH', '')}")


def test_jetson_detection_release_and_nvpmodel(tmp_path, monkeypatch):
    assert doctor._jetson(tmp_path) is None  # no device-tree model, no tegra release: not a Jetson
    root = _orin_tree(tmp_path, pinned=True)
    _fake_nvpmodel(tmp_path, monkeypatch)
    info = doctor._jetson(root)
    assert info["model"] == "NVIDIA Jetson Orin Nano Developer Kit"
    assert info["l4t"] == "36.4.3" and info["jetpack"] == "JetPack 6"
    assert info["nv_tegra_release"].startswith("# R36 (release), REVISION: 4.3")
    assert info["nvpmodel"] == "15W (mode 0)" and info["clocks_pinned"] is True


@pytest.mark.parametrize("l4t, jetpack", [("32.7.4", "JetPack 4"), ("35.5.0", "JetPack 5"),
                                          ("36.4.3", "JetPack 6"), ("38.2.0", "JetPack 7"),
                                          ("99.1", None), (None, None)])
def test_jetpack_from_l4t(l4t, jetpack):
    assert doctor._jetpack(l4t) == jetpack


@pytest.mark.parametrize("pinned", [True, False])
def test_jetson_checks_report_clocks_and_power_mode(tmp_path, monkeypatch, pinned):
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvpmodel binary: the mode is unknown
    checks = {c.name: c for c in doctor._jetson_checks(doctor._jetson(_orin_tree(tmp_path, pinned)))}
    assert checks["jetson"].ok and "L4T 36.4.3, JetPack 6" in checks["jetson"].detail
    assert not checks["nvpmodel"].ok and "nvpmodel -m" in checks["nvpmodel"].hint
    clocks = checks["jetson_clocks"]
    assert clocks.ok is pinned
    if pinned:
        assert "gpu 17000000.gpu 1020 MHz" in clocks.detail
    else:
        assert "not pinned" in clocks.detail and "sudo jetson_clocks" in clocks.hint


def test_diagnose_on_a_jetson_tree_gives_jetpack_hints(tmp_path, monkeypatch):
    root = _orin_tree(tmp_path, pinned=True)
    _fake_nvpmodel(tmp_path, monkeypatch)
    report = diagnose(root)
    names = [c["name"] for c in report["checks"]]
    assert names[-3:] == ["jetson", "nvpmodel", "jetson_clocks"]
    assert report["jetson"]["jetpack"] == "JetPack 6"
    assert all(_check(report, n)["ok"] for n in ("jetson", "nvpmodel", "jetson_clocks"))
    if not HAS_TRT:
        hint = _check(report, "tensorrt")["hint"]
        assert "python3-libnvinfer" in hint and "--system-site-packages" in hint
    if importlib.util.find_spec("pynvml") is None:  # NVML does not exist on Jetson anyway
        assert _check(report, "nvidia-ml-py")["ok"]


# --- helpers kept from the first doctor -------------------------------------------------------------

def test_check_defaults():
    assert Check("x", True, "d").hint is None and Check("x", True, "d").required is False


def test_cpu_flags_from_x86_and_arm_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Test CPU\n"
                   "flags\t\t: fpu sse avx2 fma avx512f avx512_vnni\n")
    cpu = doctor._cpu(x86)
    assert cpu["model"] == "Test CPU"
    assert cpu["flags"]["avx2"] and cpu["flags"]["avx512_vnni"] and not cpu["flags"]["amx_int8"]
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp\nCPU part\t: 0xd42\n")
    flags = doctor._cpu(arm)["flags"]
    assert flags["neon"] and flags["dotprod"] and not flags["avx2"] and not flags["i8mm"]

"""``diagnose()`` must describe this machine without raising, and ``render()`` must draw it."""

from __future__ import annotations

import importlib.util
import json

import pytest
from rich.console import Console
from rich.table import Table

from edgec import doctor
from edgec.doctor import Check, diagnose, render


@pytest.fixture(scope="module")
def report() -> dict:
    return diagnose()


def _check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


def test_report_is_json_serialisable(report):
    again = json.loads(json.dumps(report))
    assert again["edgec_version"] and again["python"] and again["platform"]
    assert again["cpu"]["cores"] >= 1 and "avx2" in again["cpu"]["flags"]
    assert set(again["cuda"]) >= {"torch_build", "available", "devices"}
    assert "CPUExecutionProvider" in again["onnxruntime_providers"]


def test_required_packages_are_ok_here(report):
    for name in ("python", "numpy", "torch", "onnx", "onnxruntime"):
        c = _check(report, name)
        assert c["ok"] and c["required"], c
    assert "CPUExecutionProvider" in _check(report, "onnxruntime")["detail"]


def test_missing_tensorrt_names_its_extra(report):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    c = _check(report, "tensorrt")
    assert not c["ok"] and not c["required"] and "edgec[trt]" in c["hint"]


def test_every_optional_gap_has_a_hint(report):
    for c in report["checks"]:
        if not c["ok"]:
            assert c["hint"], c


def test_a_failing_probe_becomes_a_failed_check(monkeypatch):
    def broken():
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(doctor, "_onnxscript", broken)
    c = _check(diagnose(), "onnxscript")
    assert not c["ok"] and "driver exploded" in c["detail"]


def test_render_returns_a_table_with_unmangled_hints(report):
    table = render(report)
    assert isinstance(table, Table) and len(table.rows) == len(report["checks"])
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "torch" in text and "onnxruntime" in text
    if not _check(report, "tensorrt")["ok"]:
        assert "edgec[trt]" in text  # not swallowed as rich markup


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


def test_jetson_detection_and_nvpmodel(tmp_path, monkeypatch):
    assert doctor._jetson(tmp_path) is None  # no device-tree model, no tegra release: not a Jetson
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text(
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvpmodel").write_text("#!/bin/sh\necho 'NV Power Mode: 15W'\necho 0\n")
    (bin_dir / "nvpmodel").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    info = doctor._jetson(tmp_path)
    assert info == {"model": "NVIDIA Jetson Orin Nano Developer Kit",
                    "nv_tegra_release": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: "
                                        "generic, EABI: aarch64",
                    "l4t": "36.4.3", "nvpmodel": "15W (mode 0)"}

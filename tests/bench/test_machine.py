"""Machine description on this machine and on a fake Jetson tree; fingerprints and mismatches."""

from __future__ import annotations

import json
import stat

import pytest

from edgec.machine import (describe_machine, is_jetson, jetson_clock_warning, jetson_info,
                                 machine_fingerprint, machine_mismatches)
from tests.bench.fixtures.sysfs_trees import jetson_machine_tree, put


@pytest.fixture
def no_nvpmodel_binary(tmp_path, monkeypatch):
    """PATH without nvpmodel, so the power mode comes from the fake tree's files."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_this_machine_is_described_as_json():
    desc = json.loads(json.dumps(describe_machine("cpu")))
    assert desc["device_kind"] == "cpu" and desc["hostname"] and desc["python"]
    assert desc["cpu"]["cores"] >= 1 and desc["cpu"]["model"] and "avx2" in desc["cpu"]["flags"]
    assert desc["packages"]["edgec"] and desc["packages"]["torch"] and desc["packages"]["numpy"]
    assert desc["memory_gb"] > 0 and desc["gpu"] is None
    if not is_jetson():
        assert desc["jetson"] is None and jetson_clock_warning(desc) is None


def test_cuda_description_without_a_gpu_says_why():
    desc = describe_machine("cuda:0")
    if desc["gpu"] is None:
        assert any(note.startswith("gpu:") for note in desc["notes"])
    else:  # a CUDA machine: torch's view of the GPU
        assert desc["gpu"]["name"] and desc["gpu"]["compute_capability"]


def test_fake_jetson_with_dvfs_clocks_is_described_and_warned(tmp_path, no_nvpmodel_binary):
    root = jetson_machine_tree(tmp_path)
    desc = json.loads(json.dumps(describe_machine("jetson", root=root)))
    jetson = desc["jetson"]
    assert desc["device_kind"] == "jetson"
    assert jetson["model"] == "NVIDIA Jetson AGX Orin Developer Kit" and jetson["l4t"] == "36.4.3"
    assert jetson["nvpmodel"] == {"name": "50W", "id": 3, "source": "/var/lib/nvpmodel/status"}
    assert jetson["clocks_pinned"] is False
    gpu = next(d for d in jetson["clocks"] if d["kind"] == "gpu")
    assert gpu == {"kind": "gpu", "name": "17000000.gpu", "cur_mhz": 306.0, "min_mhz": 306.0,
                   "max_mhz": 1300.5, "pinned": False}
    assert [d["name"] for d in jetson["clocks"]] == ["policy0", "policy4", "policy8",
                                                     "17000000.gpu"]  # VIC is not the GPU
    warning = jetson_clock_warning(desc)
    assert "not pinned" in warning and "gpu 17000000.gpu at 306 of 1300.5 MHz" in warning
    assert "sudo jetson_clocks" in warning
    assert desc["temperatures"] == {"cpu-thermal": 53.0, "gpu-thermal": 47.6, "tj-thermal": 53.1}
    assert desc["cpu"]["flags"]["neon"] and desc["cpu"]["flags"]["dotprod"]
    assert desc["cpu"]["governor"] == "schedutil" and desc["memory_gb"] == pytest.approx(65.9)
    fp = machine_fingerprint(desc)
    assert fp["jetson_model"] == jetson["model"] and fp["nvpmodel"] == "50W"


def test_fake_jetson_after_jetson_clocks_is_pinned(tmp_path, no_nvpmodel_binary):
    desc = describe_machine("cpu", root=jetson_machine_tree(tmp_path, pinned=True))
    assert desc["device_kind"] == "cpu" and desc["jetson"]["clocks_pinned"] is True
    assert jetson_clock_warning(desc) is None


def test_jetson_without_clock_files_cannot_tell(tmp_path, no_nvpmodel_binary):
    put(tmp_path, "etc/nv_tegra_release", "# R35 (release), REVISION: 5.0, GCID: 35550185")
    info = jetson_info(tmp_path)
    assert info["l4t"] == "35.5.0" and info["clocks_pinned"] is None and info["nvpmodel"] is None
    assert "cannot tell" in jetson_clock_warning({"jetson": info})


def test_nvpmodel_query_output_is_preferred(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvpmodel"  # a FAKE nvpmodel printing what `nvpmodel -q` prints
    fake.write_text("#!/bin/sh\necho 'NV Power Mode: MAXN_SUPER'\necho 2\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    info = jetson_info(jetson_machine_tree(tmp_path / "root"))
    assert info["nvpmodel"] == {"name": "MAXN_SUPER", "id": 2, "source": "nvpmodel -q"}


def test_mismatches_list_every_difference(tmp_path, no_nvpmodel_binary):
    here = describe_machine("cpu")
    assert machine_mismatches(machine_fingerprint(here), machine_fingerprint(here)) == []
    jetson = describe_machine("cpu", root=jetson_machine_tree(tmp_path))
    diffs = machine_mismatches(here, jetson)  # full descriptions are fingerprinted first
    assert any(d.startswith("jetson_model: None vs 'NVIDIA Jetson AGX Orin") for d in diffs)
    assert any(d.startswith("nvpmodel: None vs '50W'") for d in diffs)
    a = {"device_kind": "cuda", "gpu_name": "NVIDIA H100 80GB HBM3", "tensorrt": "10.3.0"}
    b = {"device_kind": "cuda", "gpu_name": "NVIDIA H200", "tensorrt": "11.0.0"}
    assert machine_mismatches(a, b) == ["gpu_name: 'NVIDIA H100 80GB HBM3' vs 'NVIDIA H200'",
                                        "tensorrt: '10.3.0' vs '11.0.0'"]

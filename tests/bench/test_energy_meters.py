"""Each power meter against a fake sysfs tree laid out like the real one, real tegrastats lines and a
fake ``pynvml`` module. Nothing here needs a Jetson, a GPU, RAPL or root.
The fake trees and where their layouts come from are in ``fixtures/sysfs_trees.py``.
"""

from __future__ import annotations

import errno
import stat
import sys
import types
from pathlib import Path

import pytest

from edgec.bench import energy
from edgec.bench.meters import (Ina3221HwmonMeter, Ina3221IioMeter, NvmlMeter, RaplMeter,
                                TegrastatsMeter, nvml_target_for_cuda_index, parse_tegrastats_line,
                                rapl, total_of_rails)
from edgec.errors import EdgecError, MissingDependencyError
from tests.bench.fixtures.sysfs_trees import (MAX_UJ, agx_orin_tree, nano_jp4_tree,
                                              orin_nx_tree, other_i2c_devices, put, rapl_tree)


# --- INA3221 ------------------------------------------------------------------------------------

def test_hwmon_orin_nx_total_is_the_vdd_in_rail(tmp_path):
    meter = Ina3221HwmonMeter(orin_nx_tree(tmp_path))
    assert meter.available() == (True, "")
    assert meter.rails() == pytest.approx({"VDD_IN": 7.4, "VDD_CPU_GPU_CV": 4.976 * 0.4,
                                           "VDD_SOC": 4.984 * 0.32})
    assert meter.read_power_w() == pytest.approx(7.4)   # VDD_IN, not VDD_IN + its own sub-rails
    assert meter.read_energy_j() is None and "VDD_IN" in meter.scope
    put(tmp_path, "sys/bus/i2c/devices/1-0040/hwmon/hwmon1/curr1_input", 2000)  # load rises
    power, energy_j, rails = meter.sample()
    assert power == pytest.approx(10.0) and energy_j is None and rails["VDD_IN"] == pytest.approx(10.0)


def test_hwmon_agx_orin_sums_rails_and_skips_nc_and_the_sum_channel(tmp_path):
    meter = Ina3221HwmonMeter(agx_orin_tree(tmp_path))
    assert meter.available() == (True, "")
    rails = meter.rails()
    assert set(rails) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}
    assert rails["VIN_SYS_5V0"] == pytest.approx(4.968 * 0.5)
    assert meter.read_power_w() == pytest.approx(3.0 + 1.5 + 2.484 + 0.39744)
    assert "sum of rails" in meter.scope


def test_iio_jetpack4_nano_reads_milliwatts_and_uses_pom_5v_in(tmp_path):
    root = nano_jp4_tree(tmp_path)
    meter = Ina3221IioMeter(root)
    assert meter.available() == (True, "")
    assert meter.rails() == pytest.approx({"POM_5V_IN": 2.132, "POM_5V_GPU": 0.078,
                                           "POM_5V_CPU": 0.275})
    assert meter.read_power_w() == pytest.approx(2.132)
    ok, why = Ina3221HwmonMeter(root).available()   # the other driver says which meter to use
    assert not ok and "ina3221-iio" in why


def test_iio_meter_on_a_jetpack6_tree_points_to_hwmon(tmp_path):
    ok, why = Ina3221IioMeter(orin_nx_tree(tmp_path)).available()
    assert not ok and "ina3221-hwmon" in why


def test_ina3221_meters_say_why_on_a_machine_without_them(tmp_path):
    for meter_class in (Ina3221HwmonMeter, Ina3221IioMeter):
        ok, why = meter_class(tmp_path).available()
        assert not ok and "sys/bus/i2c/devices does not exist" in why
    other_i2c_devices(tmp_path)
    ok, why = Ina3221HwmonMeter(tmp_path).available()
    assert not ok and "no INA3221 power monitor" in why


def test_hwmon_unreadable_rail_is_reported_not_raised(tmp_path, monkeypatch):
    from edgec.bench.meters import ina3221

    def fake_root_only_read(path: Path) -> str:  # a FAKE of EACCES: chmod 000 does not stop root
        if path.name.endswith("_input"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return path.read_text().strip()

    monkeypatch.setattr(ina3221, "read_sysfs", fake_root_only_read)
    ok, why = Ina3221HwmonMeter(orin_nx_tree(tmp_path)).available()
    assert not ok and "permission denied reading" in why and "in1_input" in why


# --- tegrastats ---------------------------------------------------------------------------------

# Jetson AGX Orin, JetPack 6, `sudo tegrastats --interval 100` while a DLA engine ran: a captured
# line in a public GitHub README (found through the code search; its repository was not shown).
AGX_ORIN_JP6 = (
    "11-21-2025 08:49:48 RAM 13983/62780MB (lfb 424x4MB) SWAP 126/31390MB (cached 0MB) CPU [90%@2201,"
    "100%@2201,100%@2201,100%@2201,100%@2201,100%@2201,100%@2201,100%@2201,100%@2201,100%@2201,"
    "100%@2201,100%@2201] EMC_FREQ 1%@2133 GR3D_FREQ 14%@[407,407] VIC_FREQ 115 NVDLA0_FREQ @1600 "
    "APE 174 CV0@73.625C CPU@77.281C Tboard@62C SOC2@70C Tdiode@62.25C SOC0@69.531C CV1@72.5C "
    "GPU@69.125C tj@77.281C SOC1@68.968C CV2@67.25C VDD_GPU_SOC 3150mW/2971mW VDD_CPU_CV "
    "14312mW/12415mW VIN_SYS_5V0 4968mW/5048mW VDDQ_VDD2_1V8AO 1091mW/1091mW")
# Jetson Orin Nano, JetPack 6: a captured line kept in a docstring of a public monitoring script.
ORIN_NANO_JP6 = (
    "09-21-2025 15:38:17 RAM 3645/7620MB (lfb 63x4MB) SWAP 236/3810MB (cached 0MB) CPU [1%@729,"
    "1%@729,4%@729,1%@729,0%@729,0%@729] EMC_FREQ 0%@204 GR3D_FREQ 0%@[305] NVDEC off NVJPG off "
    "NVJPG1 off VIC off OFA off APE 200 cpu@44.125C soc2@43.375C soc0@42.125C gpu@44.531C "
    "tj@44.531C soc1@43.156C VDD_IN 2957mW/2957mW VDD_CPU_GPU_CV 486mW/486mW VDD_SOC 1012mW/1012mW")
# Jetson AGX Orin Developer Kit, JetPack 7.2 (L4T R39.2): three values per rail. Real line from
# rbonghi/jetson_stats, jtop/tests/test_06_tegra_parse.py (TEGRASTATS_ORIN_JP7).
AGX_ORIN_JP72 = (
    "07-25-2026 09:08:28 RAM 20642/62817MB (lfb 1x2MB) CPU [23%@2201,10%@2201,4%@2201,14%@2201,"
    "30%@2201,18%@2201,10%@2201,10%@2201,33%@2201,7%@2201,5%@2201,27%@2201] EMC_FREQ 3%@3199 "
    "GR3D_FREQ 12%@[1300,1300] NVENC0 off NVDEC0 off NVJPG0 off NVJPG1 off VIC off OFA off NVDLA0 off "
    "NVDLA1 off PVA0_FREQ off APE 174 cpu@52.968C/52.968C soc2@48.406C/48.406C soc0@49.531C/49.531C "
    "gpu@47.625C/47.625C VDD_GPU_SOC 5139mW/5139mW/5139mW VDD_CPU_CV 3268mW/3268mW/3268mW "
    "VIN_SYS_5V0 5500mW/5500mW/5500mW")
# L4T R39 (JetPack 7) on an AGX Orin, where current/average/maximum differ: a fixture labelled
# "live R39 line" in a public power-telemetry test (found through the code search).
AGX_ORIN_R39_DIFFERING = (
    "09-15-2026 12:19:33 RAM 999/62841MB CPU [0%@729,off] GR3D_FREQ 0% cpu@43.093C/43.093C "
    "soc2@39.625C/39.687C soc0@40.031C/40.093C tj@42.906C/42.968C soc1@40.125C/40.156C "
    "VDD_GPU_SOC 2792mW/2792mW/2792mW VDD_CPU_CV 0mW/0mW/0mW VIN_SYS_5V0 3918mW/3952mW/4019mW")
# Jetson Nano (JetPack 4.x, CUDA 10.2), `sudo tegrastats`: a captured session in a public notes
# file; the same shape as the Nano example in rbonghi/jetson_stats tests/tegrastats.
NANO_JP4 = (
    "RAM 1655/3956MB (lfb 311x4MB) SWAP 0/1978MB (cached 0MB) IRAM 0/252kB(lfb 252kB) CPU [14%@204,"
    "14%@204,10%@204,11%@204] EMC_FREQ 3%@1600 GR3D_FREQ 16%@76 APE 25 PLL@36C CPU@39C iwlwifi@44C "
    "PMIC@50C GPU@37C AO@47C thermal@38C POM_5V_IN 2247/2189 POM_5V_GPU 78/78 POM_5V_CPU 275/275")


@pytest.mark.parametrize("line, rails, total_w", [
    (AGX_ORIN_JP6, {"VDD_GPU_SOC": 3150, "VDD_CPU_CV": 14312, "VIN_SYS_5V0": 4968,
                    "VDDQ_VDD2_1V8AO": 1091}, 23.521),
    (ORIN_NANO_JP6, {"VDD_IN": 2957, "VDD_CPU_GPU_CV": 486, "VDD_SOC": 1012}, 2.957),
    (AGX_ORIN_JP72, {"VDD_GPU_SOC": 5139, "VDD_CPU_CV": 3268, "VIN_SYS_5V0": 5500}, 13.907),
    (AGX_ORIN_R39_DIFFERING, {"VDD_GPU_SOC": 2792, "VDD_CPU_CV": 0, "VIN_SYS_5V0": 3918}, 6.71),
    (NANO_JP4, {"POM_5V_IN": 2247, "POM_5V_GPU": 78, "POM_5V_CPU": 275}, 2.247),
])
def test_tegrastats_lines_parse_to_current_rail_milliwatts(line, rails, total_w):
    parsed = parse_tegrastats_line(line)
    assert parsed == rails  # RAM/SWAP/IRAM "X/YMB", temperatures "a@xC/yC" and clocks are not rails
    assert total_of_rails({k: v / 1e3 for k, v in parsed.items()}) == pytest.approx(total_w)


def test_lines_without_rails_parse_to_nothing_and_a_lone_mw_value_is_read():
    assert parse_tegrastats_line("RAM 4722/7844MB (lfb 1x512kB) EMC_FREQ 2%@1866 APE 150") == {}
    assert parse_tegrastats_line("GR3D_FREQ 50%@918 gpu@42.5C VDD_IN 5000mW NVENC 716") == {
        "VDD_IN": 5000.0}
    assert parse_tegrastats_line("") == {}


def fake_tegrastats(tmp_path: Path, body: str) -> Path:
    """A FAKE tegrastats executable (a shell script), since this machine is not a Jetson."""
    script = tmp_path / "fake_tegrastats"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_tegrastats_meter_runs_the_tool_and_reads_its_latest_line(tmp_path):
    script = fake_tegrastats(tmp_path, f'while true; do echo "{ORIN_NANO_JP6}"; sleep 0.02; done\n')
    meter = TegrastatsMeter(command=[str(script)], interval_ms=20)
    try:
        assert meter.available() == (True, "")
        assert meter.read_power_w() == pytest.approx(2.957)
        assert meter.rails() == pytest.approx({"VDD_IN": 2.957, "VDD_CPU_GPU_CV": 0.486,
                                               "VDD_SOC": 1.012})
        assert "VDD_IN" in meter.scope and meter.update_interval_s == pytest.approx(0.02)
        proc = meter._proc
    finally:
        meter.close()
    assert proc is not None and proc.poll() is not None  # the subprocess was stopped


def test_tegrastats_meter_reports_a_missing_or_failing_tool(tmp_path):
    ok, why = TegrastatsMeter(root=tmp_path).available()
    assert not ok and "not on PATH" in why
    script = fake_tegrastats(tmp_path, 'echo "tegrastats: permission denied" >&2; exit 3\n')
    meter = TegrastatsMeter(command=[str(script)], first_line_timeout_s=5)
    ok, why = meter.available()
    meter.close()
    assert not ok and "exited (code 3)" in why and "permission denied" in why


# --- RAPL ---------------------------------------------------------------------------------------

def test_rapl_sums_packages_only_and_survives_wrap_around(tmp_path):
    meter = RaplMeter(rapl_tree(tmp_path, MAX_UJ - 3_328_850, 5_000_000))
    assert meter.available() == (True, "")
    assert "package-0, package-1" in meter.scope and "mmio" not in meter.scope
    assert meter.read_energy_j() == 0.0 and meter.read_power_w() is None
    rapl_tree(tmp_path, 1_000_000, 7_000_000, core_uj=99_000_000)  # package 0 wrapped past max
    second = meter.read_energy_j()
    assert second == pytest.approx((3_328_850 + 1_000_000 + 2_000_000) / 1e6)  # subzones ignored
    rapl_tree(tmp_path, 3_000_000, 7_000_000, core_uj=5)
    third = meter.read_energy_j()
    assert third == pytest.approx(second + 2.0) and third > second  # monotonic


def test_rapl_root_only_counter_says_so_and_explicit_request_raises(tmp_path, monkeypatch):
    root = rapl_tree(tmp_path, 10, 10)

    def fake_root_only_read(path: Path) -> str:  # a FAKE of EACCES: chmod 000 does not stop root
        if path.name == "energy_uj":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return path.read_text().strip()

    monkeypatch.setattr(rapl, "read_sysfs", fake_root_only_read)
    ok, why = RaplMeter(root).available()
    assert not ok and "permission denied reading" in why and "root-only on Linux >= 5.10" in why
    with pytest.raises(EdgecError) as raised:
        energy.pick_meter("rapl", root=root)
    assert "root-only" in str(raised.value) and "chmod" in str(raised.value)


def test_rapl_without_powercap_says_why(tmp_path):
    ok, why = RaplMeter(tmp_path).available()
    assert not ok and "powercap does not exist" in why
    put(tmp_path, "sys/class/powercap/intel-rapl/enabled", 1)
    ok, why = RaplMeter(tmp_path).available()
    assert not ok and "modprobe intel_rapl_msr" in why


# --- NVML ---------------------------------------------------------------------------------------

class FakeNVMLError(Exception):
    pass


def fake_pynvml(*, energy: bool = True, init_error: str | None = None) -> types.ModuleType:
    """A FAKE ``pynvml`` with the calls the meter makes; ``counter`` holds the mJ total."""
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = FakeNVMLError
    nvml.counter = {"mj": 812_345_678, "mw": 61_500, "shutdown": 0}

    def init():
        if init_error:
            raise FakeNVMLError(init_error)

    def total_energy(handle):
        if not energy:
            raise FakeNVMLError("Not Supported")
        return nvml.counter["mj"]

    nvml.nvmlInit = init
    nvml.nvmlShutdown = lambda: nvml.counter.__setitem__("shutdown", nvml.counter["shutdown"] + 1)
    nvml.nvmlDeviceGetCount = lambda: 1
    nvml.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    nvml.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    nvml.nvmlDeviceGetTotalEnergyConsumption = total_energy
    nvml.nvmlDeviceGetPowerUsage = lambda h: nvml.counter["mw"]
    return nvml


def test_nvml_prefers_the_energy_counter(monkeypatch):
    fake = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter = NvmlMeter(0)
    assert meter.available() == (True, "")
    assert meter.read_energy_j() == pytest.approx(812_345.678) and meter.read_power_w() == 61.5
    assert "H100" in meter.scope and any("1 s" in note for note in meter.notes)
    meter.close()
    assert fake.counter["shutdown"] == 1


def test_nvml_without_energy_counter_falls_back_to_power(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(energy=False))
    meter = NvmlMeter(0)
    assert meter.available() == (True, "")
    assert meter.read_energy_j() is None and meter.read_power_w() == 61.5
    ok, why = NvmlMeter(3).available()
    assert not ok and "no GPU index 3" in why


def test_nvml_without_driver_or_package_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error="Driver Not Loaded"))
    ok, why = NvmlMeter().available()
    assert not ok and "NVML cannot start: Driver Not Loaded" in why
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    ok, why = NvmlMeter().available()
    assert not ok and "edgec[gpu]" in why
    with pytest.raises(MissingDependencyError) as raised:
        energy.pick_meter("nvml", device="cuda")
    assert raised.value.extra == "gpu" and "nvidia-ml-py" in str(raised.value)


def test_cuda_visible_devices_maps_to_nvml_devices():
    assert nvml_target_for_cuda_index(0, {"CUDA_VISIBLE_DEVICES": "3,1"}) == 3
    assert nvml_target_for_cuda_index(1, {"CUDA_VISIBLE_DEVICES": "GPU-a1b2,GPU-c3d4"}) == "GPU-c3d4"
    assert nvml_target_for_cuda_index(2, {}) == 2

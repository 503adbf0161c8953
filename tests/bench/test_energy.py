"""Sampling and integration with fake meters of known power, and picking a meter on this machine."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgec.bench.energy import (EnergyResult, PowerMeter, PowerSampler, describe_meters,
                                list_meters, measure_energy, measure_idle, pick_meter)
from edgec.bench.meters import Ina3221HwmonMeter, Ina3221IioMeter
from edgec.errors import EdgecError

from tests.bench.fixtures.sysfs_trees import agx_orin_tree, nano_jp4_tree, orin_nx_tree


class ConstantPower(PowerMeter):
    """Fake meter: a fixed power, and ``load_w`` once ``busy`` is set."""

    name = "fake-constant"

    def __init__(self, watts: float, load_w: float | None = None):
        super().__init__()
        self.watts, self.load_w, self.busy = watts, load_w, False

    def available(self):
        return True, ""

    def read_power_w(self):
        return self.load_w if self.busy and self.load_w is not None else self.watts


class RampPower(ConstantPower):
    """Fake meter: P(t) = a + b * t, t in seconds since creation (perf_counter)."""

    name = "fake-ramp"

    def __init__(self, a: float, b: float):
        super().__init__(a)
        self.a, self.b, self.t0 = a, b, time.perf_counter()

    def read_power_w(self):
        return self.a + self.b * (time.perf_counter() - self.t0)


class EnergyCounter(ConstantPower):
    """Fake meter with only a hardware-style energy counter accumulating ``watts``."""

    name = "fake-counter"

    def __init__(self, watts: float):
        super().__init__(watts)
        self.t0 = time.perf_counter()

    def read_power_w(self):
        return None

    def read_energy_j(self):
        return 1000.0 + self.watts * (time.perf_counter() - self.t0)  # arbitrary starting count


def test_constant_power_integrates_to_power_times_duration_and_subtracts_idle():
    with PowerSampler(ConstantPower(5.0), interval_s=0.01) as sampler:
        time.sleep(0.3)
    r = sampler.result(inferences=100, idle_power_w=2.0)
    assert r.method == "integrated power (trapezoid)" and r.meter == "fake-constant"
    assert 0.3 <= r.duration_s < 1.5 and r.samples >= 10
    assert r.energy_j == pytest.approx(5.0 * r.duration_s) and r.avg_power_w == pytest.approx(5.0)
    assert r.energy_above_idle_j == pytest.approx(3.0 * r.duration_s)
    assert r.joules_per_inference == pytest.approx(5.0 * r.duration_s / 100)
    assert r.joules_per_inference_above_idle == pytest.approx(3.0 * r.duration_s / 100)
    assert {w for _, w in r.trace} == {5.0} and r.trace[0][0] < 0.005
    assert [t for t, _ in r.trace] == sorted(t for t, _ in r.trace)


def test_ramp_is_integrated_with_the_trapezoid_rule():
    meter = RampPower(a=10.0, b=100.0)  # 10 W rising 100 W/s: left-rectangle sums would be ~4% low
    with PowerSampler(meter, interval_s=0.02) as sampler:
        time.sleep(0.3)
    r = sampler.result(inferences=1)
    (t0, p0), (t1, p1) = r.trace[0], r.trace[-1]
    assert r.duration_s == pytest.approx(t1 - t0)
    # A linear power's exact integral is the mean of its end values times the duration.
    assert r.energy_j == pytest.approx((p0 + p1) / 2 * r.duration_s, rel=5e-3)
    assert p1 - p0 == pytest.approx(100.0 * r.duration_s, rel=0.02)


def test_energy_counter_is_used_when_the_meter_has_one():
    with PowerSampler(EnergyCounter(7.0), interval_s=0.02) as sampler:
        time.sleep(0.2)
    r = sampler.result(inferences=10, idle_power_w=1.0)
    assert r.method == "energy counter"
    assert r.energy_j == pytest.approx(7.0 * r.duration_s, rel=0.02)
    assert r.joules_per_inference_above_idle == pytest.approx(6.0 * r.duration_s / 10, rel=0.02)
    watts = sorted(w for _, w in r.trace)  # power derived from counter differences, dE/dt
    assert len(watts) >= 5 and watts[len(watts) // 2] == pytest.approx(7.0, rel=0.05)


def test_rails_are_averaged_and_result_round_trips_through_json(tmp_path):
    with PowerSampler(Ina3221HwmonMeter(agx_orin_tree(tmp_path)), interval_s=0.01) as sampler:
        time.sleep(0.1)
    r = sampler.result(inferences=4)
    assert r.rails_avg_w["VDD_GPU_SOC"] == pytest.approx(3.0)
    assert r.avg_power_w == pytest.approx(7.38144) and "sum of rails" in r.scope
    again = EnergyResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again == r
    assert "trace" not in r.to_dict(include_trace=False)


def test_measure_energy_counts_inferences_and_subtracts_the_idle_baseline():
    meter = ConstantPower(2.0, load_w=6.0)
    synced = []

    def infer():
        meter.busy = True  # the warm-up call starts the "load"; idle was measured before it
        time.sleep(0.002)

    r = measure_energy(meter, infer, inferences_per_call=8, min_duration_s=0.2, idle_s=0.1,
                       interval_s=0.01, synchronize=lambda: synced.append(1))
    assert r.idle_power_w == pytest.approx(2.0) and r.avg_power_w == pytest.approx(6.0)
    assert r.duration_s >= 0.2 and r.inferences % 8 == 0 and r.inferences >= 8
    assert r.energy_above_idle_j == pytest.approx(4.0 * r.duration_s)
    assert r.joules_per_inference_above_idle == pytest.approx(4.0 * r.duration_s / r.inferences)
    assert len(synced) == 2  # after warm-up, and before the window closed


def test_measure_idle_and_settings_validation():
    assert measure_idle(ConstantPower(3.5), seconds=0.05, interval_s=0.01) == pytest.approx(3.5)
    with pytest.raises(EdgecError):
        measure_idle(ConstantPower(1.0), seconds=0)
    with pytest.raises(EdgecError):
        measure_energy(ConstantPower(1.0), lambda: None, inferences_per_call=0, min_duration_s=1,
                       idle_s=0)
    with pytest.raises(EdgecError):
        PowerSampler(ConstantPower(1.0), interval_s=0)


def test_failing_reads_are_counted_and_a_dead_meter_raises():
    class Flaky(ConstantPower):
        calls = 0

        def read_power_w(self):
            self.calls += 1
            if self.calls % 2 == 0:
                raise OSError(121, "Remote I/O error")  # what a busy I2C bus returns
            return 4.0

    with PowerSampler(Flaky(4.0), interval_s=0.01) as sampler:
        time.sleep(0.1)
    r = sampler.result(inferences=1)
    assert r.energy_j == pytest.approx(4.0 * r.duration_s)
    assert any("failed" in note and "Remote I/O" in note for note in r.notes)

    class Dead(ConstantPower):
        def read_power_w(self):
            raise OSError(19, "No such device")

    with PowerSampler(Dead(1.0), interval_s=0.01) as sampler:
        time.sleep(0.03)
    with pytest.raises(EdgecError) as raised:
        sampler.result(inferences=1)
    assert "No such device" in str(raised.value)


# --- picking a meter ----------------------------------------------------------------------------

def test_auto_on_this_machine_returns_a_meter_or_none_with_a_reason(capsys):
    for device in ("cpu", "cuda", None):
        meter = pick_meter("auto", device=device)
        if meter is None:
            assert "no power meter can read" in capsys.readouterr().err
        else:
            assert isinstance(meter, PowerMeter) and meter.available()[0]
            meter.close()
    assert pick_meter("off") is None


def test_explicit_unavailable_or_unknown_meter_raises_with_reason_and_fix(tmp_path):
    with pytest.raises(EdgecError) as raised:
        pick_meter("ina3221-hwmon", root=tmp_path)
    assert "cannot read" in str(raised.value) and "does not exist" in str(raised.value)
    with pytest.raises(EdgecError) as raised:
        pick_meter("rapl", root=tmp_path)
    assert "powercap does not exist" in str(raised.value) and "root" in str(raised.value)
    with pytest.raises(EdgecError) as raised:
        pick_meter("wattmeter")
    assert "ina3221-hwmon" in str(raised.value)
    with pytest.raises(EdgecError):
        pick_meter("auto", device="tpu", root=tmp_path)


def test_auto_on_jetson_trees_picks_the_board_rails_whatever_the_device(tmp_path):
    meter = pick_meter("auto", device="cuda", root=orin_nx_tree(tmp_path / "nx"))
    assert isinstance(meter, Ina3221HwmonMeter) and meter.read_power_w() == pytest.approx(7.4)
    meter = pick_meter("auto", device="cpu", root=nano_jp4_tree(tmp_path / "nano"))
    assert isinstance(meter, Ina3221IioMeter) and meter.read_power_w() == pytest.approx(2.132)


def test_list_and_describe_meters_cover_every_meter_with_reasons(tmp_path):
    assert [m.name for m in list_meters(tmp_path)] == ["ina3221-hwmon", "ina3221-iio",
                                                       "tegrastats", "nvml", "rapl"]
    rows = describe_meters(Path(tmp_path))
    assert [r["name"] for r in rows][-1] == "rapl"
    for row in rows:
        assert row["ok"] or (row["reason"] and row["hint"]), row


def test_doctor_reports_power_meters(tmp_path):
    from edgec import doctor

    here = doctor._power_meters()
    assert here.ok or ("rapl" in here.detail and "nvml" in here.detail and here.hint)
    jetson = doctor._power_meters(orin_nx_tree(tmp_path))
    assert jetson.ok and jetson.detail.startswith("readable: ina3221-hwmon (Jetson module input")

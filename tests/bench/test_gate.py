"""`edgec gate` as a library: the decision for each metric, mismatches, config, baseline updates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgec.bench.gate import GateConfig, compare_results, load_gate_config, parse_percent, run_gate
from edgec.bench.results import SCHEMA
from edgec.bench.timing import latency_stats
from edgec.errors import EdgecError


def fake_results(scale: float = 1.0, seed: int = 0, *, device: str = "cpu", params: int = 1000,
                 accuracy: float = 0.95, n: int = 200, energy_j: float | None = None,
                 torch_version: str = "2.13.0+cpu") -> dict:
    """A results document for one model, batch 1, with ``n`` lognormal samples around ``scale`` ms."""
    rng = np.random.default_rng(seed)
    stats = latency_stats(list(scale * rng.lognormal(0.0, 0.05, n)), batch_size=1)
    model = {"file": "m.onnx", "bytes": 4096, "params": params, "flops": 5000, "accuracy": accuracy,
             "runtime": "onnxruntime", "runner": {"runtime": "onnxruntime", "version": "1.31.1",
                                                  "providers": ["CPUExecutionProvider"]},
             "latency": {"1": {"host": stats.to_dict()}}, "energy": {"skipped": "test"}}
    if energy_j is not None:  # a 2 s window of 40 readings around 5 W; J/inf = 5 W * 2 s / inferences
        watts = 5.0 * rng.normal(1.0, 0.02, 40) * energy_j
        inferences = 1000
        model["energy"] = {"meter": "fake", "idle_power_w": 1.0, "batches": {"1": {
            "joules_per_inference": float(watts.mean() * 2.0 / inferences), "duration_s": 2.0,
            "inferences": inferences, "trace": [[i * 0.05, float(w)] for i, w in enumerate(watts)]}}}
    fingerprint = {"device_kind": device, "cpu_model": "Test CPU", "torch": torch_version}
    return {"schema": SCHEMA, "source": "test", "device": device, "machine": fingerprint,
            "settings": {}, "warnings": [], "models": {"m": model}}


def statuses(report) -> dict[str, str]:
    return {c.metric: c.status for c in report.checks}


CFG = GateConfig(n_boot=200)


def test_identical_results_pass():
    report = compare_results(fake_results(), fake_results(), CFG)
    assert report.passed and set(statuses(report).values()) == {"pass"}
    assert "✅ pass" in report.markdown()


def test_a_10_percent_slowdown_fails_and_a_3_percent_one_passes():
    slow = compare_results(fake_results(1.10, seed=1), fake_results(1.0, seed=2), CFG)
    assert not slow.passed and statuses(slow)["latency b1 host p50 (ms)"] == "FAIL"
    (failure,) = slow.failures
    assert failure.p_value < 0.01 and failure.change.startswith("+10.")
    assert compare_results(fake_results(1.03, seed=1), fake_results(1.0, seed=2), CFG).passed


def test_report_only_latency_shows_the_regression_without_failing():
    cfg = GateConfig(latency="report-only", n_boot=0)
    report = compare_results(fake_results(1.5, seed=1), fake_results(1.0, seed=2), cfg)
    assert report.passed and statuses(report)["latency b1 host p50 (ms)"] == "report"
    off = compare_results(fake_results(1.5, seed=1), fake_results(), GateConfig(latency="off"))
    assert not any("latency" in c.metric for c in off.checks)


def test_params_are_compared_exactly():
    report = compare_results(fake_results(params=1001), fake_results(params=1000), CFG)
    assert not report.passed and [c.metric for c in report.failures] == ["params"]


def test_accuracy_drop_beyond_threshold_fails_within_passes():
    cfg = GateConfig(max_accuracy_drop=0.5, n_boot=0)
    assert not compare_results(fake_results(accuracy=0.940), fake_results(accuracy=0.950), cfg).passed
    assert compare_results(fake_results(accuracy=0.947), fake_results(accuracy=0.950), cfg).passed
    assert compare_results(fake_results(accuracy=0.990), fake_results(accuracy=0.950), cfg).passed


def test_mismatched_devices_are_refused_unless_allowed():
    cur, base = fake_results(device="cuda"), fake_results(device="cpu")
    with pytest.raises(EdgecError) as err:
        compare_results(cur, base, CFG)
    assert "device: 'cuda' vs 'cpu'" in err.value.message and "--allow-mismatch" in err.value.hint
    report = compare_results(cur, base, GateConfig(allow_mismatch=True, n_boot=0))
    assert report.passed and report.mismatches
    assert "--allow-mismatch" in report.markdown()


def test_package_version_and_runner_differences_are_mismatches():
    with pytest.raises(EdgecError, match="torch"):
        compare_results(fake_results(torch_version="2.12.0"), fake_results(), CFG)
    cur = fake_results()
    cur["models"]["m"]["runner"]["providers"] = ["CUDAExecutionProvider"]
    with pytest.raises(EdgecError, match="providers"):
        compare_results(cur, fake_results(), CFG)


def test_missing_model_fails_and_new_model_is_info():
    cur, base = fake_results(), fake_results()
    base["models"]["old"] = base["models"]["m"]
    cur["models"]["new"] = cur["models"].pop("m")
    report = compare_results(cur, base, CFG)
    rows = {(c.model, c.status) for c in report.checks}
    assert ("old", "FAIL") in rows and ("m", "FAIL") in rows and ("new", "info") in rows


def test_energy_regression_is_caught_and_noise_passes():
    base = fake_results(energy_j=1.0, seed=1)
    assert compare_results(fake_results(energy_j=1.0, seed=2), base, CFG).passed
    report = compare_results(fake_results(energy_j=1.25, seed=2), base, CFG)
    assert statuses(report)["energy b1 (J/inference)"] == "FAIL"
    relaxed = GateConfig(max_energy_regression=0.30, n_boot=0)
    assert compare_results(fake_results(energy_j=1.25, seed=2), base, relaxed).passed


def test_parse_percent():
    assert parse_percent("5%") == parse_percent("5") == parse_percent(5) == pytest.approx(0.05)
    with pytest.raises(EdgecError):
        parse_percent("fast")


def test_config_file_then_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".edgec-gate.toml").write_text(
        '[gate]\nmax_latency_regression = "3%"\nmax_accuracy_drop = 1.0\nlatency = "report-only"\n')
    cfg = load_gate_config(None, max_accuracy_drop=0.25)
    assert (cfg.max_latency_regression, cfg.max_accuracy_drop, cfg.latency) == (0.03, 0.25, "report-only")
    (tmp_path / "bad.toml").write_text("[gate]\nmax_latency_regresion = 3\n")
    with pytest.raises(EdgecError, match="unknown gate setting"):
        load_gate_config(tmp_path / "bad.toml")
    with pytest.raises(EdgecError, match="not found"):
        load_gate_config(tmp_path / "nope.toml")
    with pytest.raises(EdgecError, match="mode"):
        GateConfig(latency="maybe")


def test_run_gate_prints_appends_summary_and_updates_baseline(tmp_path, monkeypatch, capsys):
    cur, base = tmp_path / "cur.json", tmp_path / "base.json"
    cur.write_text(json.dumps(fake_results(1.2, seed=1)))
    base.write_text(json.dumps(fake_results(1.0, seed=2)))
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    report = run_gate(cur, base, CFG)
    assert not report.passed and "❌ 1 regression" in capsys.readouterr().out
    assert "❌ 1 regression" in summary.read_text()
    assert base.read_bytes() != cur.read_bytes()
    run_gate(cur, base, CFG, update_baseline=True)
    assert base.read_bytes() == cur.read_bytes()
    fresh = tmp_path / "new-baseline.json"
    assert run_gate(cur, fresh, CFG, update_baseline=True).passed and fresh.read_bytes() == cur.read_bytes()


def test_file_bytes_are_compared_only_between_files_quantized_the_same_way():
    base, same, other = fake_results(), fake_results(), fake_results()
    for doc in (base, same):
        doc["models"]["m"]["quantization"] = {"flavour": "reduce_range", "float_layers": []}
    same["models"]["m"]["bytes"] = 4100  # same quantization, other bytes: a real change
    other["models"]["m"].update(bytes=5000, quantization={"flavour": "reduce_range", "float_layers": ["/conv1/Conv"]})
    changed = compare_results(same, base, CFG)
    assert not changed.passed and statuses(changed)["file bytes"] == "FAIL"
    fallback = compare_results(other, base, CFG)
    assert fallback.passed and statuses(fallback)["file bytes"] == "info"
    (row,) = [c for c in fallback.checks if c.metric == "file bytes"]
    assert "float_layers" in row.limit and "/conv1/Conv" in row.limit

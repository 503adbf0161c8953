"""`edgec report fleet`: results files from several devices merged into one table, files and plot."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from edgec.bench.fleet import device_label, fleet_rows, load_fleet, write_fleet
from edgec.errors import EdgecError

BASELINE = Path(__file__).resolve().parents[2] / "benchmarks" / "baselines" / "ci-cpu.json"


def _device(doc: dict, *, jetson: str | None = None, gpu: str | None = None, p50_scale: float = 1.0,
            joules: float | None = None) -> dict:
    """A copy of a real results file dressed as another device (names, latencies, energy)."""
    doc = copy.deepcopy(doc)
    if jetson:
        doc["device"], doc["machine"]["jetson"] = "jetson", {"model": jetson}
    if gpu:
        doc["device"], doc["machine"]["gpu"] = "cuda", {"name": gpu}
    for model in doc["models"].values():
        for clocks in model["latency"].values():
            for s in clocks.values():
                s["p50"] *= p50_scale
                s["p99"] *= p50_scale
        if joules is not None:
            model["energy"] = {"meter": "ina3221-hwmon", "batches": {
                b: {"joules_per_inference": joules, "joules_per_inference_above_idle": joules / 2}
                for b in model["latency"]}}
    return doc


@pytest.fixture
def fleet_files(tmp_path) -> list[Path]:
    real = json.loads(BASELINE.read_text())
    docs = {"ci-cpu": real, "orin-nano": _device(real, jetson="NVIDIA Jetson Orin Nano", p50_scale=3.0, joules=0.02),
            "rtx": _device(real, gpu="NVIDIA GeForce RTX 4090", p50_scale=0.2)}
    paths = []
    for name, doc in docs.items():
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    return paths


def test_rows_cover_every_device_model_and_batch(fleet_files):
    fleet = load_fleet(fleet_files)
    assert fleet.labels[1:] == ["NVIDIA Jetson Orin Nano", "NVIDIA GeForce RTX 4090"]
    rows = fleet_rows(fleet)
    models = json.loads(BASELINE.read_text())["models"]
    per_device = sum(len(m["latency"]) for m in models.values())
    assert len(rows) == 3 * per_device
    nano = {(r["model"], r["batch"]): r for r in rows if r["device"] == "NVIDIA Jetson Orin Nano"}
    cpu = {(r["model"], r["batch"]): r for r in rows if r["device"] == fleet.labels[0]}
    key = ("student_int8", 1)
    assert nano[key]["p50_ms"] == pytest.approx(3 * cpu[key]["p50_ms"])
    assert nano[key]["joules_per_inference"] == 0.02 and cpu[key]["joules_per_inference"] is None


def test_write_fleet_files(fleet_files, tmp_path):
    written = write_fleet(load_fleet(fleet_files), tmp_path / "fleet")
    assert [p.name for p in written] == ["fleet.md", "fleet.json", "fleet.png"]
    doc = json.loads((tmp_path / "fleet" / "fleet.json").read_text())
    assert doc["schema"] == "edgec.fleet/1" and len(doc["devices"]) == 3
    assert "| student_int8 |" in (tmp_path / "fleet" / "fleet.md").read_text()
    assert (tmp_path / "fleet" / "fleet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_device_twice_gets_file_names(tmp_path, fleet_files):
    twin = tmp_path / "ci-cpu-2.json"
    twin.write_text(fleet_files[0].read_text())
    labels = load_fleet([fleet_files[0], twin]).labels
    assert labels[0] != labels[1] and labels[0].endswith("[ci-cpu]") and labels[1].endswith("[ci-cpu-2]")


def test_not_a_results_file_is_a_clear_error(tmp_path, fleet_files):
    other = tmp_path / "report.json"
    other.write_text(json.dumps({"models": {}}))
    with pytest.raises(EdgecError, match="report.json is not an edgec bench results file"):
        load_fleet([fleet_files[0], other])


def test_mixed_schema_versions_are_refused_together(tmp_path, fleet_files):
    newer = json.loads(fleet_files[1].read_text()) | {"schema": "edgec.bench/2"}
    path = tmp_path / "newer.json"
    path.write_text(json.dumps(newer))
    with pytest.raises(EdgecError, match=r"mix schema versions \(ci-cpu.json: edgec.bench/1, newer.json: edgec.bench/2\)"):
        load_fleet([fleet_files[0], path])


def test_device_label_falls_back_to_cpu_and_host():
    assert device_label({"device": "cpu", "machine": {"cpu": {"model": "AMD EPYC"}, "hostname": "ci"}}) == "AMD EPYC (ci)"


def test_cli_report_fleet(fleet_files, tmp_path):
    from typer.testing import CliRunner

    from edgec.cli import app

    result = CliRunner().invoke(app, ["report", "fleet", *map(str, fleet_files), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "edgec fleet: 3 device(s)" in result.stdout
    assert (tmp_path / "out" / "fleet.png").is_file()

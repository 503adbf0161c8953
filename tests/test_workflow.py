"""The example CI workflow (.github/workflows/jetson.yml) keeps the structure the docs describe.

A fleet matrix over self-hosted runners, each entry gating against its own baseline file, and a
final job that merges every device's results with `edgec report fleet`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "jetson.yml"


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_fleet_matrix_maps_each_device_to_a_runner_and_its_own_baseline():
    job = _workflow()["jobs"]["bench-and-gate"]
    entries = job["strategy"]["matrix"]["include"]
    assert len(entries) >= 4
    devices = [e["device"] for e in entries]
    assert len(set(devices)) == len(devices)
    assert {"orin-nano", "orin-nx", "agx-orin"} <= set(devices)
    assert any(e["bench_device"] == "cuda" for e in entries)  # a desktop GPU
    for e in entries:
        assert e["baseline"] == f"benchmarks/baselines/{e['device']}.json"
        assert "self-hosted" in e["runner"] and e["device"] in e["runner"]
        assert e["bench_device"] in ("jetson", "cuda")
    assert job["runs-on"] == "${{ matrix.runner }}"
    steps = "\n".join(str(s.get("run", "")) for s in job["steps"])
    assert "--baseline ${{ matrix.baseline }}" in steps
    assert "--json results/${{ matrix.device }}.json" in steps
    uploads = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["with"]["name"] == "bench-${{ matrix.device }}"


def test_fleet_report_job_merges_every_devices_results():
    jobs = _workflow()["jobs"]
    job = jobs["fleet-report"]
    assert job["needs"] == "bench-and-gate"
    assert "always()" in job["if"]
    downloads = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/download-artifact")]
    assert downloads and downloads[0]["with"]["pattern"] == "bench-*"
    runs = "\n".join(str(s.get("run", "")) for s in job["steps"])
    assert "edgec report fleet results/*.json --out fleet" in runs


def test_pull_request_ab_job_is_kept():
    wf = _workflow()
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in triggers
    assert wf["jobs"]["ab"]["if"] == "github.event_name == 'pull_request'"

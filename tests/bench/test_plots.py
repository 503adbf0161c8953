"""Plots and the table: real PNG files per model and batch, a power plot when energy was measured."""

from __future__ import annotations

import io

from rich.console import Console

from edgec.bench.plots import results_table, write_plots
from tests.bench.test_gate import fake_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def two_batch_doc(energy: bool) -> dict:
    doc = fake_results(energy_j=1.0 if energy else None)
    model = doc["models"]["m"]
    model["latency"]["8"] = {"host": dict(model["latency"]["1"]["host"], batch_size=8),
                             "device": dict(model["latency"]["1"]["host"], clock="cuda events")}
    if energy:
        r = model["energy"]["batches"]["1"]
        model["energy"]["batches"]["1"] = dict(r, avg_power_w=5.0, joules_per_inference_above_idle=0.002)
    return doc


def test_latency_pngs_per_batch_without_energy(tmp_path):
    paths = write_plots(two_batch_doc(energy=False), tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["m-b1-latency.png", "m-b8-latency.png"]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert not list((tmp_path / "plots").glob(".tmp-*"))


def test_power_png_when_energy_was_measured(tmp_path):
    paths = write_plots(two_batch_doc(energy=True), tmp_path)
    power = tmp_path / "m-power.png"
    assert power in paths and power.read_bytes().startswith(PNG_MAGIC)


def test_table_has_one_row_per_batch_and_clock():
    buf = io.StringIO()
    Console(file=buf, width=200).print(results_table(two_batch_doc(energy=True)))
    text = buf.getvalue()
    rows = [line for line in text.splitlines() if line.startswith("│ m (onnxruntime)")]
    assert len(rows) == 3  # batch 1 host, batch 8 device, batch 8 host
    assert "0.002" in text  # J/inference above idle, batch 1

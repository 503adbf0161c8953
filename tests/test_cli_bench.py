"""`edgec bench` and `edgec gate` from the command line: outputs and the 0 / 1 / 2 exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.test_gate import fake_results

EDGEC = [sys.executable, "-m", "edgec"]


def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # cwd: a folder without .edgec-gate.toml, so the repository's gate settings do not apply.
    return subprocess.run([*EDGEC, *args], capture_output=True, text=True, timeout=300, env=env,
                          cwd=cwd)


def write(path: Path, doc) -> str:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    import torch
    from torch import nn

    path = tmp_path_factory.mktemp("cli") / "tiny.onnx"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    with pytest.warns(DeprecationWarning):  # the TorchScript exporter: deprecated but dependency-free
        torch.onnx.export(model.eval(), (torch.randn(1, 1, 8, 8),), str(path), dynamo=False,
                          input_names=["input"], dynamic_axes={"input": {0: "batch"}})
    return path


def test_bench_writes_json_and_plots(tiny_onnx, tmp_path):
    out, plots = tmp_path / "r.json", tmp_path / "plots"
    r = run("bench", str(tiny_onnx), "--batch", "1,4", "--min-runs", "20", "--min-duration", "0.02",
            "--warmup-runs", "2", "--warmup-s", "0", "--energy", "off", "--threads", "1",
            "--json", str(out), "--plot", str(plots))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "edgec.bench/1"
    latency = doc["models"]["tiny.onnx"]["latency"]
    assert list(latency) == ["1", "4"] and all(len(latency[b]["host"]["samples_ms"]) >= 20 for b in latency)
    assert sorted(p.name for p in plots.iterdir()) == ["tiny.onnx-b1-latency.png", "tiny.onnx-b4-latency.png"]
    assert "tiny.onnx (onnxruntime)" in r.stderr and "p50 ms" in r.stderr  # the table

    same = run("gate", str(out), "--baseline", str(out), cwd=tmp_path)
    assert same.returncode == 0 and "edgec gate: ✅ pass" in same.stdout


@pytest.mark.parametrize("name, content, message", [
    ("corrupt.onnx", b"\x08\x07not a model" * 8, "ONNX Runtime cannot load"),
    ("model.pt", b"PK\x03\x04", "is a pickle"),
    ("missing.onnx", None, "model file not found"),
])
def test_bench_bad_model_exits_2(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    r = run("bench", str(path), "--energy", "off")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_bench_bad_batch_list_exits_2(tiny_onnx):
    r = run("bench", str(tiny_onnx), "--batch", "1,eight")
    assert r.returncode == 2 and "comma-separated integers" in r.stderr


def test_gate_regression_exits_1_and_update_baseline(tmp_path):
    cur = write(tmp_path / "cur.json", fake_results(1.2, seed=1))
    base = write(tmp_path / "base.json", fake_results(1.0, seed=2))
    summary = tmp_path / "summary.md"
    env = {**__import__("os").environ, "GITHUB_STEP_SUMMARY": str(summary)}
    r = run("gate", cur, "--baseline", base, env=env, cwd=tmp_path)  # default limit: 5%
    assert r.returncode == 1 and "❌ 1 regression" in r.stdout and "latency b1 host" in r.stdout
    assert "❌ 1 regression" in summary.read_text()
    (tmp_path / "loose.toml").write_text('[gate]\nmax_latency_regression = "30%"\n')
    assert run("gate", cur, "--baseline", base, "--config", str(tmp_path / "loose.toml"),
               cwd=tmp_path).returncode == 0
    assert run("gate", cur, "--baseline", base, "--config", str(tmp_path / "loose.toml"),
               "--max-latency-regression", "5%", "--latency", "report-only", cwd=tmp_path).returncode == 0
    updated = run("gate", cur, "--baseline", base, "--update-baseline", cwd=tmp_path)
    assert updated.returncode == 0 and Path(base).read_text() == Path(cur).read_text()


def test_gate_mismatch_exits_2_unless_allowed(tmp_path):
    cur = write(tmp_path / "cur.json", fake_results(device="cuda"))
    base = write(tmp_path / "base.json", fake_results(device="cpu"))
    r = run("gate", cur, "--baseline", base, cwd=tmp_path)
    assert r.returncode == 2 and "different machines" in r.stderr and "'cuda' vs 'cpu'" in r.stderr
    assert run("gate", cur, "--baseline", base, "--allow-mismatch", cwd=tmp_path).returncode == 0


def _empty_samples() -> dict:
    doc = fake_results()
    doc["models"]["m"]["latency"]["1"]["host"]["samples_ms"] = []
    return doc


@pytest.mark.parametrize("current, message", [
    (dict(fake_results(), schema="edgec.bench/9"), "has results schema 'edgec.bench/9'"),
    (_empty_samples(), "empty or missing sample list"),
    ('{"schema": "edgec.bench/1", "models": ', "is not valid JSON"),
    (None, "results file not found"),
])
def test_gate_bad_input_exits_2(tmp_path, current, message):
    base = write(tmp_path / "base.json", fake_results())
    cur = str(tmp_path / "missing.json") if current is None else write(tmp_path / "cur.json", current)
    r = run("gate", cur, "--baseline", base, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr

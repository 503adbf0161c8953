"""`edgec kernels bench` / benchmarks/kernels.py: method, table and results document.

Without a GPU: the command exits 2 before any slow work; the per-call splitting of CUPTI records (flush kernels
mark call boundaries) and the row bookkeeping (speed-up, goal, model, correctness verdict, a failing case kept
as an error row) are checked with recorded/fake measurements. With a GPU the quick run is done for real.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

from edgec.errors import EdgecError
from edgec.kernels import bench, bench_timing


def _edgec(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgec", "kernels", "bench", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_without_a_gpu_it_exits_2_saying_what_is_needed(tmp_path):
    reason = bench.gpu_missing()
    if reason is None:
        pytest.skip("this machine can run the kernels (the gpu-marked test covers it)")
    out = tmp_path / "k.json"
    start = time.perf_counter()
    r = _edgec("--out", str(out))
    elapsed = time.perf_counter() - start
    assert r.returncode == 2, r.stdout + r.stderr
    assert "CUDA GPU" in r.stderr and "pycuda" in r.stderr and "Traceback" not in r.stderr
    for part in reason.split("; "):  # every missing piece is named
        assert part.split(" (")[0] in r.stderr, part
    assert not out.exists() and not r.stdout.strip()
    assert elapsed < 30, f"the refusal took {elapsed:.1f} s: it must come before any slow work"


def test_require_gpu_names_the_missing_piece():
    reason = bench.gpu_missing()
    if reason is None:
        bench.require_gpu()  # must not raise where everything is present
        return
    with pytest.raises(EdgecError) as info:
        bench.require_gpu()
    assert reason in info.value.message and "edgec[gpu]" in info.value.hint


def test_bad_iteration_counts_are_bad_input():
    with pytest.raises(EdgecError, match="iters=0"):
        bench.run(iters=0)
    with pytest.raises(EdgecError, match="trials=0"):
        bench.run(trials=0)


def test_cases_cover_the_issue_table_and_goals():
    full = bench.cases()
    labels = [bench._label(c) for c in full]
    for want in ("W4 m=1 4096x4096", "W4 m=1 11008x4096", "W1 m=1 11008x4096", "W8 m=1 4096x4096",
                 "W4 m=16 4096x4096", "W1 m=16 4096x4096", "W8 m=16 4096x4096", "sparse conv 64->64 56x56 90% b1",
                 "sparse conv 64->64 56x56 90% b8", "INT8 m=1 4096x4096", "INT8 m=64 4096x4096"):
        assert want in labels, want
    goals = {bench._label(c): bench.goal_of(c) for c in full}
    assert goals["W4 m=1 11008x4096"] == 3.0 and goals["W4 m=1 4096x4096"] == 2.5
    assert goals["W1 m=1 11008x4096"] == 6.0 and goals["W4 m=16 4096x4096"] == 2.0
    assert goals["W8 m=1 4096x4096"] == 1.6 and goals["INT8 m=16 4096x4096"] == 1.5
    assert goals["sparse conv 64->64 56x56 90% b1"] == 1.5
    assert goals["sparse conv 64->64 56x56 90% b8"] is None and goals["INT8 m=32 4096x4096"] is None
    assert len(bench.cases(quick=True)) == 4
    assert {c["op"] for c in bench.cases(only=("int8", "sparse"))} == {"int8_linear", "sparse_conv2d"}
    assert len(bench.cases(only=("lowbit",))) == 9


def _ev(name, start, dur):
    return (name, float(start), float(dur))


def test_device_times_split_calls_at_the_flush_kernels(monkeypatch):
    flush = object.__new__(bench_timing.L2Flush)
    flush.names = {"flush_kernel"}
    # 2 functions x 3 iters; "a" launches two kernels per call, "b" one
    events = []
    t = 0
    for name, kernels in (("a", [("a1", 2.0), ("a2", 3.0)]), ("b", [("b1", 10.0)])):
        for _ in range(3):
            events.append(_ev("flush_kernel", t, 60))
            t += 70
            for kname, dur in kernels:
                events.append(_ev(kname, t, dur))
                t += 20
    monkeypatch.setattr(bench_timing, "profile_kernels", lambda body: events)
    out = bench_timing.device_times({"a": lambda: None, "b": lambda: None}, flush, iters=3)
    assert out["a"]["median_us"] == 5.0 and out["a"]["kernels_per_call"] == 2 and out["a"]["n"] == 3
    assert out["a"]["span_median_us"] == 23.0  # first start to last end: gaps are not in median_us
    assert out["b"]["median_us"] == 10.0 and out["b"]["kernels"] == ["b1"]
    assert "cupti" in out["a"]["method"]


def test_device_times_falls_back_to_events_when_cupti_records_are_missing(monkeypatch):
    flush = object.__new__(bench_timing.L2Flush)
    flush.names = {"flush_kernel"}
    monkeypatch.setattr(bench_timing, "profile_kernels", lambda body: [])
    monkeypatch.setattr(bench_timing, "event_times", lambda fn, fl, iters: {"median_us": 7.0, "method": "events"})
    assert bench_timing.device_times({"a": lambda: None}, flush, iters=4) == {"a": {"median_us": 7.0,
                                                                                    "method": "events"}}


def test_run_case_bookkeeping(monkeypatch):
    import torch

    w = torch.randn(8, 16)
    setup = {"make_x": lambda: torch.randn(2, 16), "edgec": lambda x: x @ w.T, "baseline": lambda x: x @ w.T,
             "baseline_name": "cublas_fp16", "reference": lambda x: x.double() @ w.double().T, "bytes": 4_000_000}
    monkeypatch.setattr(bench, "_lowbit", lambda case: setup)
    monkeypatch.setattr(bench, "device_times", lambda fns, flush, iters: {
        "edgec": {"median_us": 4.0, "method": "cupti"}, "baseline": {"median_us": 12.0, "method": "cupti"}})
    monkeypatch.setattr(bench, "host_times", lambda fn, iters: {"e2e_us": 20.0, "throughput_us": 9.0})
    case = {"op": "lowbit_linear", "bits": 4, "shape": [1, 4096, 4096]}
    row = bench.run_case(case, iters=5, warmup=1, trials=2, flush=None, copy_gbps=4000.0)
    assert row["ok"] and row["max_rel_err"] < 1e-5 and row["trials"] == 2
    assert row["speedup"] == 3.0 and row["goal"] == 2.5 and row["meets_goal"] is True
    assert row["achieved_gbps"] == pytest.approx(1000.0) and row["fraction_of_copy_bandwidth"] == pytest.approx(0.25)
    assert row["model"]["bound"] == "memory" and row["model_baseline"]["predicted_us"] > row["model"]["predicted_us"]
    assert row["edgec"]["e2e_us"] == 20.0 and row["baseline"]["name"] == "cublas_fp16"

    setup["edgec"] = lambda x: x @ w.T + 1.0  # a wrong kernel is flagged, whatever its speed
    assert not bench.run_case(case, 5, 1, 2, None, 4000.0)["ok"]

    def broken(case):
        raise RuntimeError("nvcc exploded")

    monkeypatch.setattr(bench, "_lowbit", broken)
    row = bench.run_case(case, 5, 1, 2, None, 4000.0)
    assert row["error"] == "RuntimeError: nvcc exploded" and "model" in row and "speedup" not in row


def _doc():
    return {
        "machine": {"gpu": "NVIDIA H200", "arch": "sm_90"}, "copy_bandwidth_gbps": 3930.0,
        "timing": "device: CUPTI", "results": [
            {"op": "lowbit_linear", "bits": 4, "shape": [1, 4096, 4096], "goal": 2.5, "meets_goal": False,
             "edgec": {"median_us": 5.0, "e2e_us": 12.0}, "baseline": {"median_us": 10.0, "e2e_us": 25.0},
             "speedup": 2.0, "achieved_gbps": 1700.0, "fraction_of_copy_bandwidth": 0.43, "max_rel_err": 1e-3,
             "ok": True, "model": {"predicted_us": 4.1}, "model_baseline": {"predicted_us": 10.5}},
            {"op": "int8_linear", "shape": [16, 4096, 4096], "goal": 1.5, "meets_goal": True,
             "edgec": {"median_us": 5.0}, "baseline": {"median_us": 10.0}, "speedup": 2.0, "max_rel_err": 0.5,
             "ok": False},
            {"op": "sparse_conv2d", "shape": [8, 64, 56, 56, 64, 3, 3], "sparsity": 0.9, "goal": None,
             "error": "KernelError: boom"}]}


def test_table_has_times_model_speedup_goal_and_verdicts():
    table = bench.format_table(_doc())
    assert "3930 GB/s" in table
    w4 = next(line for line in table.splitlines() if line.startswith("W4 m=1 4096x4096"))
    for part in ("5.0", "12.0", "4.1", "10.0", "25.0", "10.5", "2.00x", "2.5x", "1700", "43%", "1.0e-03", "MISSED"):
        assert part in w4, part
    int8 = next(line for line in table.splitlines() if line.startswith("INT8 m=16"))
    assert "WRONG" in int8 and "met" in int8
    assert "sparse conv 64->64 56x56 90% b8" in table and "ERROR KernelError: boom" in table
    assert bench.default_output(_doc(), "out").as_posix() == "out/kernels-NVIDIA_H200.json"


@pytest.mark.gpu
def test_quick_bench_runs_on_the_gpu(cuda, tmp_path):
    out = tmp_path / "k.json"
    r = _edgec("--quick", "--iters", "10", "--warmup", "2", "--out", str(out), timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "GB/s" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["schema"] == bench.SCHEMA and doc["copy_bandwidth_gbps"] > 0
    assert {row["op"] for row in doc["results"]} == {"sparse_conv2d", "lowbit_linear", "int8_linear"}
    for row in doc["results"]:
        assert "error" not in row, row.get("traceback")
        assert row["ok"], row  # correct against FP32 on fresh inputs
        assert row["edgec"]["median_us"] > 0 and row["baseline"]["median_us"] > 0 and math.isfinite(row["speedup"])
        assert row["edgec"]["e2e_us"] >= row["edgec"]["median_us"] * 0.5
        assert 0 < row["fraction_of_copy_bandwidth"] < 2

"""`edgec kernels bench`: a clear exit-2 error without a GPU (before any slow work), a real run with one.

The benchmark's kernels are checked for correctness in test_kernels_gpu.py; here the command is
run end to end and its results document is checked for shape and sanity.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

from edgec.errors import EdgecError
from edgec.kernels import bench


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


def test_table_has_speedup_bandwidth_and_error_columns():
    recorded = {  # a hand-written results document, standing in for a GPU run
        "machine": {"gpu": "NVIDIA H100 80GB HBM3", "arch": "sm_90"}, "copy_bandwidth_gbps": 2900.0,
        "results": [{"op": "lowbit_linear", "shape": [1, 4096, 4096], "bits": 4, "dtype": "float16",
                     "kernel": {"median_us": 10.0}, "baselines": {"cublas_float16": {"median_us": 35.0}},
                     "speedup": {"cublas_float16": 3.5}, "max_abs_err": 1e-3, "achieved_gbps": 850.0}],
    }
    table = bench.format_table(recorded)
    assert "2900 GB/s" in table and "cublas_float16=35.0 (3.50x)" in table and "850" in table
    assert "bits=4" in table and "1.00e-03" in table
    assert bench.default_output(recorded, "out").as_posix() == "out/kernels-NVIDIA_H100_80GB_HBM3.json"


@pytest.mark.gpu
def test_quick_bench_runs_on_the_gpu(cuda, tmp_path):
    out = tmp_path / "k.json"
    r = _edgec("--quick", "--iters", "5", "--warmup", "2", "--out", str(out), timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "GB/s" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["schema"] == bench.SCHEMA and doc["copy_bandwidth_gbps"] > 0
    ops = {row["op"] for row in doc["results"]}
    assert ops == {"sparse_conv2d_csr", "lowbit_linear", "int8_linear_dp4a"}
    for row in doc["results"]:
        assert row["kernel"]["median_us"] > 0 and all(s > 0 for s in row["speedup"].values())
        assert math.isfinite(row["max_abs_err"])
        # garbage output would be off by O(10..100); int8 also carries activation quantization error
        assert row["max_abs_err"] < (5.0 if row["op"] == "int8_linear_dp4a" else 0.5), row
    lowbit = [row for row in doc["results"] if row["op"] == "lowbit_linear"]
    assert all(0 < row["fraction_of_copy_bandwidth"] < 2 for row in lowbit)

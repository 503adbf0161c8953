"""The static performance model: units, which resource bounds each case, and the per-case dispatch."""

from __future__ import annotations

import pytest

from edgec.kernels import perfmodel as pm


def test_memory_bound_time_is_bytes_over_the_measured_copy_bandwidth():
    r = pm.dense_linear(1, 4096, 4096)  # cuBLAS FP16 GEMV: the 32 MiB fp16 weight dominates
    assert r["bound"] == "memory" and r["bytes"] == 2 * (4096 * 4096 + 4096 + 4096)
    assert r["t_mem_us"] == pytest.approx(r["bytes"] / 3930e3, abs=0.01)  # 3.93 TB/s -> 8.5 us
    assert r["predicted_us"] == pytest.approx(r["t_mem_us"] + pm.H200.fixed_us, abs=0.01)


def test_fewer_bits_fewer_bytes_and_batch_turns_math_bound():
    w4, w1 = pm.lowbit_linear(1, 11008, 4096, 4), pm.lowbit_linear(1, 11008, 4096, 1)
    assert w1["bytes"] < w4["bytes"] < pm.dense_linear(1, 11008, 4096)["bytes"]
    assert w4["bound"] == "memory" and pm.lowbit_linear(16, 4096, 4096, 4)["bound"] == "memory"
    # from 4 rows the tensor cores take the FMAs: only the decode is issued on CUDA cores
    assert pm.lowbit_linear(4, 4096, 4096, 4)["t_issue_us"] < pm.lowbit_linear(3, 4096, 4096, 4)["t_issue_us"]
    assert pm.int8_mmvq(1, 4096, 4096)["bound"] == "memory" and pm.int8_mmvq(64, 4096, 4096)["bound"] == "issue"


def test_sparse_conv_model_counts_one_ffma_per_nonzero_per_pixel():
    r = pm.sparse_conv_generated(1, 64, 56, 56, 64, nnz=3686, tap_loads=2600, oh=56, ow=56)
    assert r["instr_per_output"] == pytest.approx((3686 + 2600) * 56 * 56 / (64 * 56 * 56), abs=0.1)
    dense = pm.dense_conv(1, 64, 56, 56, 64, 3, 3, 56, 56)
    assert dense["instr_per_output"] == 2 * 64 * 9  # FLOPs per output


def test_predict_dispatches_on_the_benchmark_row():
    assert pm.predict({"op": "lowbit_linear", "bits": 4, "shape": [1, 4096, 4096]}) == pm.lowbit_linear(1, 4096, 4096, 4)
    assert pm.predict({"op": "int8_linear", "shape": [8, 4096, 4096]}) == pm.int8_mmvq(8, 4096, 4096)
    big = pm.predict({"op": "int8_linear", "shape": [64, 4096, 4096]})  # torch._int_mm path: three launches
    assert big["t_issue_us"] == 0 and big["predicted_us"] > 3 * pm.H200.fixed_us
    conv = {"op": "sparse_conv2d", "shape": [1, 64, 56, 56, 64, 3, 3], "nnz": 3686, "tap_loads": 2600}
    assert pm.predict(conv)["device"] == "NVIDIA H200" and pm.predict_baseline(conv)["bound"] in ("memory", "issue")
    with pytest.raises(KeyError):
        pm.predict({"op": "nope", "shape": [1]})

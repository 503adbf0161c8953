"""Latency measurement: the stats helper on known samples, the loop's stopping rules, runners."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from torch import nn

from edgec.bench.timing import (HostClock, LatencyStats, bench_runner, cold_start, latency_stats,
                                measure_latency)
from edgec.errors import EdgecError
from edgec.backends.torch.runner import TorchRunner


def test_stats_on_known_samples():
    s = latency_stats([4.0, 1.0, 3.0, 2.0, 5.0], batch_size=2, clock="test clock")
    assert (s.count, s.min, s.max, s.mean, s.p50) == (5, 1.0, 5.0, 3.0, 3.0)
    # Linear interpolation between order statistics: p90 = 4 + 0.6 * (5 - 4).
    assert (s.p90, s.p95, s.p99) == pytest.approx((4.6, 4.8, 4.96))
    assert s.std == pytest.approx(np.sqrt(2.0))  # population std of 1..5
    assert s.cv == pytest.approx(np.sqrt(2.0) / 3.0)
    assert s.throughput == pytest.approx(2 * 5 / 0.015)  # 10 items in 15 ms
    assert s.samples_ms == [4.0, 1.0, 3.0, 2.0, 5.0] and s.clock == "test clock"
    assert s.stable is False


def test_stable_threshold_is_trtexecs_2_5_percent():
    assert latency_stats([1.0, 1.02, 0.98, 1.0]).stable is True   # cv ~1.4%
    assert latency_stats([1.0, 1.1, 0.9, 1.0]).stable is False    # cv ~7%
    assert latency_stats([2.0] * 10).cv == 0.0


def test_to_dict_is_json_and_can_drop_samples():
    s = latency_stats([1.0, 2.0, 3.0])
    full, short = s.to_dict(), s.to_dict(include_samples=False)
    assert json.loads(json.dumps(full))["samples_ms"] == [1.0, 2.0, 3.0]
    assert "samples_ms" not in short and short["p50"] == 2.0 and short["clock"] == HostClock.name


def test_no_samples_is_an_error():
    with pytest.raises(EdgecError):
        latency_stats([])


def test_sleep_1ms_meets_both_min_runs_and_min_duration():
    calls = []
    start = time.perf_counter()
    s = measure_latency(lambda: (calls.append(1), time.sleep(0.001)), warmup_runs=3, warmup_s=0.02,
                        min_runs=20, min_duration_s=0.1)
    wall = time.perf_counter() - start
    assert isinstance(s, LatencyStats) and s.count >= 20
    assert sum(s.samples_ms) >= 100.0 and wall >= 0.1 + 0.02  # timed loop + warm-up durations
    assert len(calls) >= s.count + 3                           # warm-up calls were not timed
    assert s.p50 >= 1.0 and s.min >= 1.0
    assert s.min <= s.p50 <= s.p90 <= s.p95 <= s.p99 <= s.max
    assert s.throughput == pytest.approx(s.count / (sum(s.samples_ms) / 1e3))


def test_min_runs_dominates_when_duration_is_short():
    s = measure_latency(lambda: None, warmup_runs=0, warmup_s=0, min_runs=500, min_duration_s=0)
    assert s.count == 500


def test_max_runs_caps_the_timed_loop():
    s = measure_latency(lambda: None, warmup_runs=0, warmup_s=0, min_runs=5, min_duration_s=10.0,
                        max_runs=50)
    assert s.count == 50


def test_custom_clock_is_used_and_named():
    class FakeClock:
        name = "fake device clock"

        def time_call(self, fn):
            fn()
            return 2.0

    s = measure_latency(lambda: None, warmup_runs=0, warmup_s=0, min_runs=10, min_duration_s=0.05,
                        clock=FakeClock())
    assert s.clock == "fake device clock" and s.count == 25 and s.p99 == 2.0  # 25 * 2 ms = 50 ms


@pytest.mark.parametrize("bad", [{"min_runs": 0}, {"batch_size": 0},
                                 {"min_runs": 10, "max_runs": 5}])
def test_bad_settings_are_user_errors(bad):
    with pytest.raises(EdgecError):
        measure_latency(lambda: None, **bad)


def _tiny_runner() -> TorchRunner:
    torch.manual_seed(0)
    return TorchRunner(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)))


def test_bench_runner_times_the_runner():
    runner = _tiny_runner()
    x = np.zeros((8, 1, 4, 4), np.float64)  # converted to float32 once, before timing
    s = bench_runner(runner, x, warmup_runs=2, warmup_s=0, min_runs=30, min_duration_s=0.01)
    assert s.batch_size == 8 and s.count >= 30 and s.min > 0
    assert s.throughput == pytest.approx(8 * s.count / (sum(s.samples_ms) / 1e3))


def test_cold_start_reports_positive_times():
    closed = []

    def open_fn():
        r = _tiny_runner()
        r.close = lambda: closed.append(True)
        return r

    out = cold_start(open_fn, np.zeros((1, 1, 4, 4), np.float32))
    assert out["load_ms"] > 0 and out["first_inference_ms"] > 0
    assert out["total_ms"] == pytest.approx(out["load_ms"] + out["first_inference_ms"])
    assert out["runtime"] == "torch" and closed == [True]


def test_gc_is_paused_while_timing_and_restored():
    import gc

    seen = []
    measure_latency(lambda: seen.append(gc.isenabled()), warmup_runs=0, warmup_s=0, min_runs=5,
                    min_duration_s=0)
    assert seen == [False] * 5 and gc.isenabled()

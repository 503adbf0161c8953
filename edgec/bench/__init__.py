"""Benchmarking: latency timing (``timing``); energy meters, results schema, gate statistics and
plots live in sibling modules.

Importing this package is cheap (numpy only); runners and their runtimes are not imported here.

Example:
    >>> from edgec.bench import measure_latency
    >>> measure_latency(lambda: None, min_runs=10, min_duration_s=0.0).count >= 10
    True
"""

from edgec.bench.timing import (HostClock, LatencyStats, bench_runner, cold_start, latency_stats,
                                measure_latency)

__all__ = [
    "HostClock", "LatencyStats", "bench_runner", "cold_start", "latency_stats", "measure_latency",
]

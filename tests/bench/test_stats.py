"""The gate's statistics on simulated latency samples: power, false alarms, thresholds, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.bench.stats import bootstrap_ratio_ci, compare_samples, mann_whitney_slower
from edgec.errors import EdgecError

N, NOISE, SEEDS = 200, 0.05, 500


def draw(rng: np.random.Generator, scale: float, kind: str, n: int = N) -> np.ndarray:
    """``n`` latencies around ``scale`` ms with 5% noise (lognormal or normal)."""
    if kind == "lognormal":
        return scale * rng.lognormal(0.0, NOISE, n)
    return scale * rng.normal(1.0, NOISE, n)


def fail_rate(slowdown: float, threshold: float, kind: str, seeds: int = SEEDS) -> float:
    fails = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        base, cur = draw(rng, 1.0, kind), draw(rng, 1.0 + slowdown, kind)
        fails += compare_samples(cur, base, threshold=threshold, alpha=0.01, n_boot=0).regressed
    return fails / seeds


@pytest.mark.parametrize("kind", ["lognormal", "normal"])
def test_a_10_percent_slowdown_is_caught(kind):
    assert fail_rate(0.10, threshold=0.05, kind=kind, seeds=200) == 1.0


@pytest.mark.parametrize("kind", ["lognormal", "normal"])
def test_identical_distributions_false_alarm_rate_at_most_1_percent(kind):
    assert fail_rate(0.0, threshold=0.05, kind=kind) <= 0.01


def test_the_test_alone_is_calibrated_at_alpha():
    # With no threshold, only the test decides: false alarms should be about alpha = 1%
    # (500 seeds: binomial sd ~0.45 points, so 2% is more than two sd above).
    rate = fail_rate(0.0, threshold=0.0, kind="lognormal")
    assert rate <= 0.02


@pytest.mark.parametrize("kind", ["lognormal", "normal"])
def test_a_3_percent_slowdown_under_a_5_percent_threshold_passes(kind):
    assert fail_rate(0.03, threshold=0.05, kind=kind, seeds=200) == 0.0


def test_a_slowdown_above_threshold_but_not_significant_passes():
    # 5 noisy samples per side: the median moved 8% but that is well within the noise.
    rng = np.random.default_rng(3)
    base, cur = rng.lognormal(0.0, 0.3, 5), rng.lognormal(0.0, 0.3, 5)
    cur = cur * (1.08 * np.median(base) / np.median(cur))
    c = compare_samples(cur, base, threshold=0.05)
    assert c.change > 0.05 and c.p_value >= 0.01 and not c.regressed


def test_comparison_fields_and_bootstrap_interval_cover_the_true_ratio():
    rng = np.random.default_rng(7)
    base, cur = draw(rng, 2.0, "lognormal", 400), draw(rng, 2.2, "lognormal", 400)
    c = compare_samples(cur, base, threshold=0.05)
    assert c.regressed and c.n_current == c.n_baseline == 400
    assert c.ci_low < 1.10 < c.ci_high and c.ci_low > 1.05
    assert c.to_dict()["change"] == pytest.approx(c.ratio - 1)
    assert c.baseline == pytest.approx(np.median(base)) and c.current == pytest.approx(np.median(cur))


def test_rank_test_ignores_a_few_huge_outliers():
    # A page fault of 100x in 3 of 200 baseline runs must not hide a 10% slowdown.
    rng = np.random.default_rng(1)
    base, cur = draw(rng, 1.0, "lognormal"), draw(rng, 1.1, "lognormal")
    base[:3] *= 100
    assert compare_samples(cur, base, threshold=0.05, n_boot=0).regressed


def test_faster_current_passes_and_p_is_large():
    rng = np.random.default_rng(2)
    base, cur = draw(rng, 1.0, "normal"), draw(rng, 0.8, "normal")
    c = compare_samples(cur, base, threshold=0.05, n_boot=0)
    assert not c.regressed and c.p_value > 0.99 and c.ci_low is None


def test_all_equal_samples_give_no_evidence():
    assert mann_whitney_slower([1.0] * 10, [1.0] * 10) == 1.0


def test_bootstrap_subsamples_long_lists():
    rng = np.random.default_rng(0)
    lo, hi = bootstrap_ratio_ci(rng.normal(10, 1, 20_000), rng.normal(10, 1, 20_000), n_boot=200)
    assert lo < 1.0 < hi and hi - lo < 0.05


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")]])
def test_bad_samples_are_user_errors(bad):
    with pytest.raises(EdgecError):
        compare_samples(bad, [1.0, 2.0], threshold=0.05)


def test_bad_settings_are_user_errors():
    with pytest.raises(EdgecError):
        compare_samples([1.0], [1.0], threshold=-0.1)
    with pytest.raises(EdgecError):
        bootstrap_ratio_ci([1.0], [1.0], statistic="mode")

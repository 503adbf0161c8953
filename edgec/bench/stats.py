"""Is the current build slower than the baseline, beyond a threshold, and is that real or noise?

The decision rule for latency and energy (one comparison = one model, batch size and clock):

    regressed  <=>  median(current) / median(baseline) - 1  >  threshold
                    AND  Mann-Whitney U, one-sided, of current against baseline * (1 + threshold)
                         gives p < alpha

The test's null hypothesis is "current is no slower than the baseline slowed down by the whole
threshold", so a slowdown *within* the threshold is flagged with probability at most ``alpha``
(for independent samples), and noise alone even less often. Mann-Whitney is rank-based: latency
samples are skewed, heavy-tailed and sometimes bimodal, and a few outliers (a page fault, a
scheduler hiccup) move ranks by one place but a mean by a lot. The percentile-bootstrap confidence
interval of the median ratio is reported beside it so that a person sees the size of the change and
its uncertainty ("+9.8% [+9.1%, +10.6%]"), not just a p-value.

Caveat (see docs/bench_and_gate.md): samples of one run are not truly independent (clock ramps,
thermal drift), and run-to-run variation is not in them at all; with thousands of samples the test
finds tiny differences "significant". The threshold is what keeps those from failing a build.

Example:
    >>> rng = np.random.default_rng(0)
    >>> base = rng.lognormal(0.0, 0.05, 200)
    >>> compare_samples(base * 1.10, base, threshold=0.05).regressed
    True
    >>> compare_samples(base * 1.03, base, threshold=0.05).regressed
    False
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgec.errors import EdgecError

__all__ = ["SampleComparison", "compare_samples", "mann_whitney_slower", "bootstrap_ratio_ci"]

BOOTSTRAP_MAX_N = 5000  # per side; larger sample lists are subsampled for the (display-only) CI


@dataclass
class SampleComparison:
    """Outcome of :func:`compare_samples`. ``ratio`` = current statistic / baseline statistic."""

    statistic: str
    baseline: float
    current: float
    ratio: float
    ci_low: float | None
    ci_high: float | None
    confidence: float
    p_value: float
    threshold: float
    alpha: float
    n_baseline: int
    n_current: int
    regressed: bool

    @property
    def change(self) -> float:
        """Relative change, e.g. 0.098 for 9.8% slower."""
        return self.ratio - 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with ``change``)."""
        return {**asdict(self), "change": self.change}


def _clean(x: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise EdgecError(f"{what}: no samples to compare",
                         hint="the results file must keep its raw samples; re-run edgec bench")
    if not np.all(np.isfinite(a)):
        raise EdgecError(f"{what}: samples contain NaN or infinity", hint="re-run edgec bench")
    return a


def mann_whitney_slower(current: Sequence[float] | np.ndarray,
                        baseline: Sequence[float] | np.ndarray, threshold: float = 0.0) -> float:
    """One-sided Mann-Whitney U p-value for "current is slower than baseline * (1 + threshold)".

    Uses scipy's exact distribution for small samples without ties and the normal approximation
    with tie correction otherwise.

    Example:
        >>> mann_whitney_slower([2.0, 2.1, 2.2, 2.3], [1.0, 1.1, 1.2, 1.3]) < 0.05
        True
    """
    from scipy.stats import mannwhitneyu

    cur = _clean(current, "current")
    base = _clean(baseline, "baseline") * (1.0 + threshold)
    if np.ptp(np.concatenate([cur, base])) == 0.0:
        return 1.0  # every sample equal: no evidence either way (scipy would warn and return nan)
    return float(mannwhitneyu(cur, base, alternative="greater", method="auto").pvalue)


def bootstrap_ratio_ci(current: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray,
                       statistic: str = "median", confidence: float = 0.95, n_boot: int = 1000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``statistic(current) / statistic(baseline)``.

    Each side is resampled with replacement on its own. Sides longer than 5,000 samples are first
    subsampled (without replacement) to bound memory and time; that widens the interval slightly,
    which errs on the cautious side. ``statistic`` is ``"median"`` or ``"mean"``.

    Example:
        >>> lo, hi = bootstrap_ratio_ci([1.1, 1.2, 1.15, 1.12], [1.0, 1.05, 1.02, 0.99])
        >>> 1.0 < lo <= hi < 1.25
        True
    """
    if statistic not in ("median", "mean"):
        raise EdgecError(f"unknown statistic '{statistic}'", hint="use 'median' or 'mean'")
    fn = np.median if statistic == "median" else np.mean
    rng = np.random.default_rng(seed)
    cur, base = _clean(current, "current"), _clean(baseline, "baseline")
    cur, base = (rng.choice(a, BOOTSTRAP_MAX_N, replace=False) if a.size > BOOTSTRAP_MAX_N else a
                 for a in (cur, base))
    ratios = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(cur.size, base.size))  # ~16 MB of indices per chunk
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        c = fn(cur[rng.integers(0, cur.size, (k, cur.size))], axis=1)
        b = fn(base[rng.integers(0, base.size, (k, base.size))], axis=1)
        ratios[start:start + k] = c / np.where(b > 0, b, np.nan)
    tail = (1.0 - confidence) / 2 * 100
    lo, hi = np.nanpercentile(ratios, [tail, 100 - tail])
    return float(lo), float(hi)


def compare_samples(current: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray,
                    *, threshold: float, alpha: float = 0.01, statistic: str = "median",
                    n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> SampleComparison:
    """Compare two sample lists (higher = worse) with the rule in this module's docstring.

    ``threshold`` is a fraction (0.05 = 5% slower allowed). ``n_boot=0`` skips the bootstrap
    interval (it is for display; the decision does not use it).

    Example:
        >>> c = compare_samples([1.2] * 50 + [1.3] * 50, [1.0] * 50 + [1.1] * 50, threshold=0.05)
        >>> round(c.ratio, 3), c.regressed
        (1.19, True)
    """
    if threshold < 0 or not 0 < alpha < 1:
        raise EdgecError(f"threshold must be >= 0 and alpha in (0, 1); got {threshold}, {alpha}")
    cur, base = _clean(current, "current"), _clean(baseline, "baseline")
    fn = np.median if statistic == "median" else np.mean
    c_stat, b_stat = float(fn(cur)), float(fn(base))
    ratio = c_stat / b_stat if b_stat > 0 else float("inf")
    p = mann_whitney_slower(cur, base, threshold)
    lo = hi = None
    if n_boot > 0:
        lo, hi = bootstrap_ratio_ci(cur, base, statistic, confidence, n_boot, seed)
    return SampleComparison(
        statistic=statistic, baseline=b_stat, current=c_stat, ratio=ratio, ci_low=lo, ci_high=hi,
        confidence=confidence, p_value=p, threshold=threshold, alpha=alpha,
        n_baseline=int(base.size), n_current=int(cur.size),
        regressed=bool(ratio - 1.0 > threshold and p < alpha),
    )

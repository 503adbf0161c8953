"""`edgec gate`: compare a results file against a baseline; fail on a real regression.

Checks, per model present in both files:
- **latency** per batch size and clock: fails when the median is more than the threshold slower
  AND a one-sided Mann-Whitney U test on the raw samples says so (:mod:`edgec.bench.stats`);
- **energy** (J/inference) per batch size: the same rule on per-sample energies from the power trace;
- **params, FLOPs, model file bytes**: must be equal (deterministic; a change must be deliberate:
  accept it with ``--update-baseline``). File bytes are compared only between files quantized the same
  way (the entries' ``quantization``: INT8 flavour and layers kept in float): accuracy-aware PTQ may keep
  other layers in float on another machine's trajectory, and such a file differs in bytes by design;
- **accuracy**: fails when it drops by more than ``max_accuracy_drop`` percentage points;
- **TensorRT layer precision** (only when asked): ``min_int8_layers`` (share of counted engine
  layers running in INT8) and ``max_fallback_layers`` (layers meant for INT8 that run in float),
  read from each model's ``engine_layers`` (or ``runner.engine_layers``) in CURRENT;
Results from different machines, power modes, package versions or runner settings are refused
(exit 2) unless ``allow_mismatch``. Thresholds come from flags, else ``.edgec-gate.toml``.

Example:
    >>> report = run_gate("runs/pr/results.json", "benchmarks/baselines/ci-cpu.json", GateConfig())  # doctest: +SKIP
    >>> report.passed                                                                               # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgec.atomic import atomic_write_bytes
from edgec.bench.results import iter_latency, load_results, machine_differences
from edgec.bench.stats import compare_samples, mann_whitney_slower
from edgec.console import say
from edgec.errors import EdgecError

__all__ = ["GateConfig", "Check", "GateReport", "compare_results", "run_gate", "load_gate_config",
           "parse_percent", "CONFIG_FILE", "MODES"]

CONFIG_FILE = ".edgec-gate.toml"
MODES = ("gate", "report-only", "off")
_EXACT = (("params", "params"), ("flops", "FLOPs"), ("bytes", "file bytes"))


def parse_percent(value: str | float | int, what: str = "threshold") -> float:
    """``"5%"``, ``"5"`` or ``5`` -> 0.05: thresholds are always percentages.

    Example:
        >>> parse_percent("5%"), parse_percent(10)
        (0.05, 0.1)
    """
    text = str(value).strip().removesuffix("%").strip()
    try:
        pct = float(text)
    except ValueError:
        raise EdgecError(f"{what}: {value!r} is not a percentage", hint="write e.g. 5% or 5") from None
    if not 0 <= pct < 1000:
        raise EdgecError(f"{what}: {value!r} is out of range", hint="use a percentage from 0 to 1000")
    return pct / 100


@dataclass
class GateConfig:
    """Thresholds: regressions as fractions (0.05 = 5% slower), accuracy drop in percentage points."""

    max_latency_regression: float = 0.05
    max_energy_regression: float = 0.10
    max_accuracy_drop: float = 0.5
    alpha: float = 0.01
    latency: str = "gate"   # gate | report-only | off
    energy: str = "gate"
    allow_mismatch: bool = False
    n_boot: int = 1000
    min_int8_layers: float | None = None     # fraction of engine layers in INT8 (TensorRT engines)
    max_fallback_layers: int | None = None   # layers that fell back from INT8 to float

    def __post_init__(self) -> None:
        for name in ("latency", "energy"):
            if getattr(self, name) not in MODES:
                raise EdgecError(f"gate {name} mode {getattr(self, name)!r} is not one of "
                                 f"{', '.join(MODES)}", hint=f"e.g. --{name} report-only")
        if not 0 < self.alpha < 0.5:
            raise EdgecError(f"alpha must be in (0, 0.5), got {self.alpha}", hint="e.g. --alpha 0.01")
        if self.max_accuracy_drop < 0:
            raise EdgecError("max accuracy drop must be >= 0 points")
        if self.min_int8_layers is not None and not 0 <= self.min_int8_layers <= 1:
            raise EdgecError(f"min INT8 layers must be a fraction in [0, 1], got {self.min_int8_layers}",
                             hint="e.g. --min-int8-layers 0.9")
        if self.max_fallback_layers is not None and self.max_fallback_layers < 0:
            raise EdgecError("max fallback layers must be >= 0", hint="e.g. --max-fallback-layers 0")


def load_gate_config(config_file: str | os.PathLike[str] | None = None,
                     **overrides: Any) -> GateConfig:
    """Defaults, then ``[gate]`` of ``config_file`` (or ``./.edgec-gate.toml`` when present), then
    ``overrides`` that are not None (the command-line flags).

    Example:
        >>> load_gate_config(None, max_latency_regression="3%").max_latency_regression
        0.03
    """
    values: dict[str, Any] = {}
    path = Path(config_file) if config_file else Path(CONFIG_FILE)
    if config_file and not path.is_file():
        raise EdgecError(f"gate config file not found: {path}", hint="check the --config path")
    if path.is_file():
        values.update(_read_toml(path))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(GateConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise EdgecError(f"{path}: unknown gate setting(s) {', '.join(unknown)}",
                         hint=f"known: {', '.join(sorted(known))}")
    for key in ("max_latency_regression", "max_energy_regression"):
        if key in values:
            values[key] = parse_percent(values[key], key)
    try:
        for key in ("max_accuracy_drop", "alpha", "min_int8_layers"):
            if key in values:
                values[key] = float(values[key])
        if "max_fallback_layers" in values:
            values["max_fallback_layers"] = int(values["max_fallback_layers"])
    except (TypeError, ValueError) as exc:
        raise EdgecError(f"gate setting is not a number: {exc}", hint="e.g. alpha = 0.01") from None
    return GateConfig(**values)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10 (JetPack 6)
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise EdgecError(f"reading {path} on Python 3.10 needs the 'tomli' package",
                             hint="pip install tomli, or pass the thresholds as flags") from None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdgecError(f"cannot read gate config {path}: {exc}", hint="fix the TOML syntax") from exc
    table = data.get("gate", {})
    if not isinstance(table, dict):
        raise EdgecError(f"{path}: [gate] must be a table", hint="see docs/bench_and_gate.md")
    return dict(table)


@dataclass
class Check:
    """One row of the comparison. ``status``: pass, FAIL, report (a regression not gated), info."""

    status: str
    model: str
    metric: str
    baseline: str
    current: str
    change: str = ""
    limit: str = ""
    p_value: float | None = None


@dataclass
class GateReport:
    """All checks of one comparison, and the differences that were allowed."""

    current: str
    baseline: str
    config: GateConfig
    checks: list[Check] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "FAIL"]

    @property
    def passed(self) -> bool:
        return not self.failures

    def markdown(self) -> str:
        """The summary printed by the CLI and appended to ``$GITHUB_STEP_SUMMARY``."""
        c, icons = self.config, {"pass": "✅", "FAIL": "❌", "report": "⚠️", "info": "ℹ️"}
        head = "✅ pass" if self.passed else f"❌ {len(self.failures)} regression(s)"
        lines = [f"## edgec gate: {head}", "",
                 f"current `{self.current}` vs baseline `{self.baseline}`", "",
                 f"Limits: latency +{c.max_latency_regression:.1%} ({c.latency}), energy "
                 f"+{c.max_energy_regression:.1%} ({c.energy}), accuracy -{c.max_accuracy_drop:g} "
                 f"points; a slowdown fails only when also significant (one-sided Mann-Whitney U "
                 f"against baseline x (1 + limit), p < {c.alpha:g}).", "",
                 "| | model | metric | baseline | current | change | limit | p |",
                 "|---|---|---|---:|---:|---:|---:|---:|"]
        for k in self.checks:
            p = "" if k.p_value is None else f"{k.p_value:.2g}"
            lines.append(f"| {icons[k.status]} | {k.model} | {k.metric} | {k.baseline} | "
                         f"{k.current} | {k.change} | {k.limit} | {p} |")
        if self.mismatches:
            lines += ["", "Compared despite differences (--allow-mismatch; current vs baseline):"]
            lines += [f"- {m}" for m in self.mismatches]
        return "\n".join(lines) + "\n"


def compare_results(current: dict[str, Any], baseline: dict[str, Any], config: GateConfig,
                    current_name: str = "current", baseline_name: str = "baseline") -> GateReport:
    """Compare two validated results documents (see :mod:`edgec.bench.results`).

    Raises :class:`EdgecError` listing the differences when the machines or settings differ and
    ``config.allow_mismatch`` is off.

    Example:
        >>> compare_results(load_results("pr.json"), load_results("main.json"), GateConfig()).passed  # doctest: +SKIP
        True
    """
    report = GateReport(current_name, baseline_name, config)
    report.mismatches = machine_differences(current, baseline)
    if report.mismatches and not config.allow_mismatch:
        raise EdgecError(
            "refusing to compare results from different machines or settings (current vs "
            "baseline):\n  - " + "\n  - ".join(report.mismatches),
            hint="benchmark both on the same machine with the same packages and settings, or pass "
                 "--allow-mismatch to compare anyway")
    cur_models, base_models = current["models"], baseline["models"]
    for name in base_models:
        if name not in cur_models:
            report.checks.append(Check("FAIL", name, "model", "present", "missing"))
    for name, cur in cur_models.items():
        base = base_models.get(name)
        if base is None:
            report.checks.append(Check("info", name, "model", "absent", "new"))
            continue
        report.checks += _exact_checks(name, cur, base, config)
        if config.latency != "off":
            report.checks += _latency_checks(name, cur, base, config)
        if config.energy != "off":
            report.checks += _energy_checks(name, cur, base, config)
    report.checks += _layer_checks(cur_models, config, current_name)
    return report


def _layer_checks(models: dict[str, Any], config: GateConfig, source: str) -> list[Check]:
    """``min_int8_layers`` / ``max_fallback_layers`` on every model with a TensorRT layer summary."""
    if config.min_int8_layers is None and config.max_fallback_layers is None:
        return []
    out = []
    for name, m in models.items():
        layers = m.get("engine_layers") or (m.get("runner") or {}).get("engine_layers")
        if not layers:
            continue
        if not layers.get("detailed"):
            out.append(Check("FAIL", name, "engine layers", "", "no per-layer precision",
                             limit="needs DETAILED profiling verbosity"))
            continue
        if config.min_int8_layers is not None:
            share = layers["int8_fraction"]
            out.append(Check("FAIL" if share < config.min_int8_layers else "pass", name, "INT8 layers",
                             "", f"{share:.1%} ({layers['int8']}/{layers['counted']})",
                             limit=f">= {config.min_int8_layers:.0%}"))
        if config.max_fallback_layers is not None:
            n = layers["fallback_count"]
            out.append(Check("FAIL" if n > config.max_fallback_layers else "pass", name, "INT8 fallback layers",
                             "", f"{n}" + (f" ({', '.join(layers['fallback'][:3])})" if n else ""),
                             limit=f"<= {config.max_fallback_layers}"))
    if not out:
        raise EdgecError(f"{source} has no TensorRT engine layer summary, so --min-int8-layers / "
                         "--max-fallback-layers cannot be checked",
                         hint="benchmark the engine (edgec bench model.plan) or build with engine.backend: "
                              "tensorrt; or drop those options")
    return out


def _exact_checks(name: str, cur: dict, base: dict, config: GateConfig) -> list[Check]:
    out = []
    for key, label in _EXACT:
        a, b = cur.get(key), base.get(key)
        if a is None or b is None:
            continue
        if key == "bytes" and cur.get("quantization") != base.get("quantization"):
            out.append(Check("info", name, label, f"{b:,}", f"{a:,}", "quantized differently",
                             _describe_quantization(base.get("quantization"), cur.get("quantization"))))
            continue
        change = "" if a == b else f"{(a - b) / b:+.2%}" if b else "changed"
        out.append(Check("pass" if a == b else "FAIL", name, label, f"{b:,}", f"{a:,}", change, "equal"))
    a, b = cur.get("accuracy"), base.get("accuracy")
    if a is not None and b is not None:
        drop = (b - a) * 100
        out.append(Check("FAIL" if drop > config.max_accuracy_drop + 1e-9 else "pass", name,
                         "accuracy (%)", f"{b * 100:.2f}", f"{a * 100:.2f}", f"{(a - b) * 100:+.2f} pt",
                         f"-{config.max_accuracy_drop:g} pt"))
    return out


def _describe_quantization(base: dict | None, cur: dict | None) -> str:
    """What differs between two entries' ``quantization`` (flavour, layers kept in float)."""
    base, cur = base or {}, cur or {}
    keys = sorted(k for k in set(base) | set(cur) if base.get(k) != cur.get(k))
    return "; ".join(f"{k}: {base.get(k)} -> {cur.get(k)}" for k in keys) or "not recorded"


def _status(regressed: bool, mode: str) -> str:
    return ("FAIL" if mode == "gate" else "report") if regressed else "pass"


def _latency_checks(name: str, cur: dict, base: dict, config: GateConfig) -> list[Check]:
    out = []
    base_lat = base.get("latency") or {}
    for batch, clock, stats in iter_latency(cur):
        ref = (base_lat.get(batch) or {}).get(clock)
        metric = f"latency b{batch} {clock} p50 (ms)"
        if ref is None:
            out.append(Check("info", name, metric, "not measured", f"{stats['p50']:.4g}"))
            continue
        c = compare_samples(stats["samples_ms"], ref["samples_ms"],
                            threshold=config.max_latency_regression, alpha=config.alpha,
                            n_boot=config.n_boot)
        ci = "" if c.ci_low is None else f" [{c.ci_low - 1:+.1%}, {c.ci_high - 1:+.1%}]"
        out.append(Check(_status(c.regressed, config.latency), name, metric, f"{c.baseline:.4g}",
                         f"{c.current:.4g}", f"{c.change:+.1%}{ci}",
                         f"+{config.max_latency_regression:.0%}", c.p_value))
    return out


def _energy_samples(r: dict[str, Any]) -> np.ndarray:
    # Each power reading as the J/inference it implies: P_i * window / inferences.
    trace = np.asarray([w for _, w in r.get("trace") or []], dtype=float)
    return trace * r["duration_s"] / max(r.get("inferences") or 1, 1)


def _energy_checks(name: str, cur: dict, base: dict, config: GateConfig) -> list[Check]:
    out = []
    ec, eb = cur.get("energy") or {}, base.get("energy") or {}
    for batch, r in (ec.get("batches") or {}).items():
        ref = (eb.get("batches") or {}).get(batch)
        metric = f"energy b{batch} (J/inference)"
        if ref is None:
            out.append(Check("info", name, metric, "not measured", f"{r['joules_per_inference']:.4g}"))
            continue
        a, b = r["joules_per_inference"], ref["joules_per_inference"]
        sa, sb = _energy_samples(r), _energy_samples(ref)
        change = a / b - 1 if b > 0 else float("inf")
        if min(sa.size, sb.size) < 3:
            out.append(Check("info", name, metric, f"{b:.4g}", f"{a:.4g}", f"{change:+.1%}",
                             "not tested: < 3 power samples"))
            continue
        p = mann_whitney_slower(sa, sb, config.max_energy_regression)
        regressed = change > config.max_energy_regression and p < config.alpha
        out.append(Check(_status(regressed, config.energy), name, metric, f"{b:.4g}", f"{a:.4g}",
                         f"{change:+.1%}", f"+{config.max_energy_regression:.0%}", p))
    return out


def run_gate(current: str | os.PathLike[str], baseline: str | os.PathLike[str], config: GateConfig,
             *, update_baseline: bool = False) -> GateReport:
    """Load both files, compare, print the markdown summary to stdout (and append it to
    ``$GITHUB_STEP_SUMMARY`` when set); with ``update_baseline``, then write ``current`` over
    ``baseline`` atomically (a missing baseline is created). The caller maps ``passed`` to the
    exit code.

    Example:
        >>> run_gate("runs/ci/results.json", "benchmarks/baselines/ci-cpu.json",
        ...          load_gate_config(latency="report-only")).passed        # doctest: +SKIP
        True
    """
    doc = load_results(current)
    if update_baseline and not Path(baseline).exists():
        atomic_write_bytes(baseline, Path(current).read_bytes())
        say(f"no baseline at {baseline} yet: wrote {current} there")
        return GateReport(str(current), str(baseline), config)
    report = compare_results(doc, load_results(baseline), config, str(current), str(baseline))
    text = report.markdown()
    sys.stdout.write(text)
    sys.stdout.flush()
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
    if update_baseline:
        atomic_write_bytes(baseline, Path(current).read_bytes())
        say(f"baseline updated: {baseline} now holds {current}")
    return report

"""The results file (``edgec.bench/1``): what `edgec bench` and `edgec build` write, `edgec gate` reads.

One JSON document per run, written atomically. Its shape is a public contract; a change that
breaks readers bumps the number after the slash, and readers refuse versions they do not know::

    {"schema": "edgec.bench/1", "edgec_version": "0.1.0", "created_utc": "2026-05-09T07:35:25Z",
     "source": "edgec bench" | "edgec build", "device": "cpu" | "cuda" | "jetson",
     "machine": {...describe_machine()...}, "machine_fingerprint": "3f2a...",
     "settings": {"warmup_runs", "warmup_s", "min_runs", "min_duration_s", "threads", "batches", "energy"},
     "warnings": ["..."],
     "models": {"<name>": {
         "file", "bytes", "params", "flops", "accuracy",        # null when unknown (bench has no
         "runtime", "runner": {...Runner.describe()...},        # params/flops/accuracy)
         "inputs": [{"name", "shape" (one sample, no batch), "dtype", "source"}],
         "cold_start": {"load_ms", "first_inference_ms", "total_ms", ...},
         "latency": {"<batch>": {"host": LatencyStats, "device": LatencyStats (GPU only)}},
         "energy": {"meter", "idle_power_w", "batches": {"<batch>": EnergyResult}} | {"skipped": "why"}}}}

``LatencyStats`` is :meth:`edgec.bench.timing.LatencyStats.to_dict` (``samples_ms`` kept: the gate
tests on raw samples), accuracy is a fraction of the test split, ``bytes`` the model file's size.

Example:
    >>> doc = load_results("runs/digits/results.json")            # doctest: +SKIP
    >>> doc["models"]["student_int8"]["latency"]["1"]["host"]["p50"]  # doctest: +SKIP
    0.041
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgec import __version__
from edgec import machine as m
from edgec.atomic import atomic_write_text
from edgec.bench.timing import STABLE_CV
from edgec.errors import EdgecError
from edgec.machine import machine_mismatches

__all__ = ["SCHEMA", "new_results", "load_results", "validate_results", "write_results",
           "iter_latency", "describe_machine", "machine_differences", "build_results",
           "write_build_results", "stability_warnings", "dumps_results"]

SCHEMA = "edgec.bench/1"
# Runner settings that make two latency figures incomparable when they differ.
RUNNER_KEYS = ("runtime", "version", "device", "providers", "threads", "intra_op_threads",
               "inter_op_threads", "graph_optimization_level", "dtype")


def new_results(source: str, device: str, settings: dict[str, Any],
                machine: dict[str, Any] | None = None) -> dict[str, Any]:
    """An empty results document (``models`` to be filled) for a run on ``device``.

    Example:
        >>> new_results("edgec bench", "cpu", {"batches": [1]})["schema"]
        'edgec.bench/1'
    """
    machine, fingerprint, warnings = describe_machine(device) if machine is None else (machine, {}, [])
    return {"schema": SCHEMA, "edgec_version": __version__,
            "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": source, "device": device, "machine": machine,
            "machine_fingerprint": fingerprint, "settings": settings, "warnings": warnings,
            "models": {}}


def describe_machine(device: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """``(description, fingerprint, warnings)`` of this machine for results on ``device``
    (:mod:`edgec.machine`: CPU, GPU, clocks, Jetson power mode, package versions).

    Example:
        >>> describe_machine("cpu")[1]["device_kind"]
        'cpu'
    """
    desc = m.describe_machine(device)
    warning = m.jetson_clock_warning(desc)
    return desc, m.machine_fingerprint(desc), [warning] if warning else []


def machine_differences(current: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """What makes two results incomparable, each as "what: current vs baseline": device, machine,
    power mode, key package versions, and per model the runner's settings (runtime version,
    providers, threads) and the power meter. Empty when comparable.

    Example:
        >>> a = {"device": "cpu", "machine": {"device": "cpu"}, "models": {}}
        >>> machine_differences(a, {**a, "device": "cuda"})
        ["device: 'cpu' vs 'cuda'"]
    """
    out = []
    if current.get("device") != baseline.get("device"):
        out.append(f"device: {current.get('device')!r} vs {baseline.get('device')!r}")
    mc, mb = current.get("machine") or {}, baseline.get("machine") or {}
    out += [f"machine {line}" for line in machine_mismatches(mc, mb)]
    for name, model in current.get("models", {}).items():
        base = baseline.get("models", {}).get(name)
        if base is None:
            continue
        rc, rb = model.get("runner") or {}, base.get("runner") or {}
        for key in RUNNER_KEYS:
            if rc.get(key) != rb.get(key) and (key in rc or key in rb):
                out.append(f"{name}: runner {key}: {rc.get(key)!r} vs {rb.get(key)!r}")
        ec, eb = (m.get("energy") or {} for m in (model, base))
        if ec.get("meter") and eb.get("meter") and ec["meter"] != eb["meter"]:
            out.append(f"{name}: power meter: {ec['meter']!r} vs {eb['meter']!r}")
    return list(dict.fromkeys(out))


def write_results(path: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    """Validate ``doc`` and write it atomically to ``path``.

    Example:
        >>> write_results("out/results.json", doc)                  # doctest: +SKIP
    """
    validate_results(doc, str(path), require_samples=False)
    return atomic_write_text(path, dumps_results(doc))


def dumps_results(doc: dict[str, Any]) -> str:
    """JSON text indented for people and diffs, with each list of numbers (raw samples, power
    traces) on one line: a 10 s run of a fast model holds ~10^5 samples.

    Example:
        >>> print(dumps_results({"a": {"samples_ms": [1.0, 2.5]}}), end="")
        {
         "a": {
          "samples_ms": [1.0,2.5]
         }
        }
    """
    lists: list[Any] = []

    def fold(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: fold(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            flat = all(isinstance(v, (int, float)) or (isinstance(v, (list, tuple)) and all(
                isinstance(u, (int, float)) for u in v)) for v in obj)
            if flat and obj:
                lists.append(obj)
                return f"\x00{len(lists) - 1}\x00"
            return [fold(v) for v in obj]
        return obj

    text = json.dumps(fold(doc), indent=1, sort_keys=True, default=str)
    for i, values in enumerate(lists):
        text = text.replace(f'"\\u0000{i}\\u0000"', json.dumps(values, separators=(",", ":")), 1)
    return text + "\n"


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a results file; every problem is an :class:`EdgecError` (exit 2).

    Example:
        >>> load_results("nope.json")
        Traceback (most recent call last):
        edgec.errors.EdgecError: results file not found: nope.json
        ...
    """
    p = Path(path)
    if not p.is_file():
        raise EdgecError(f"results file not found: {p}",
                         hint="write one with `edgec bench MODEL --json FILE`, or `edgec build` "
                              "(it writes runs/<name>/results.json)")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgecError(f"{p} is not valid JSON ({exc})",
                         hint="the file is truncated or was edited by hand; re-create it with "
                              "edgec bench or edgec build") from exc
    validate_results(doc, str(p))
    return doc


def validate_results(doc: Any, source: str = "results", require_samples: bool = True) -> None:
    """Check the schema version and that every latency entry has finite raw samples.

    Example:
        >>> validate_results({"schema": "edgec.bench/0", "models": {}}, "old.json")
        Traceback (most recent call last):
        edgec.errors.EdgecError: old.json has results schema 'edgec.bench/0'; this edgec reads 'edgec.bench/1'
        ...
    """
    if not isinstance(doc, dict) or "schema" not in doc:
        raise EdgecError(f"{source} is not an edgec results file (no 'schema' field)",
                         hint="pass a file written by `edgec bench --json` or `edgec build`")
    if doc["schema"] != SCHEMA:
        raise EdgecError(f"{source} has results schema {doc['schema']!r}; this edgec reads {SCHEMA!r}",
                         hint="re-run edgec bench with this edgec version (or use the edgec "
                              "version that wrote the file) so both sides share one schema")
    models = doc.get("models")
    if not isinstance(models, dict) or not models:
        raise EdgecError(f"{source} has no models", hint="re-run edgec bench or edgec build")
    for name, model in models.items():
        if not isinstance(model, dict):
            raise EdgecError(f"{source}: model {name!r} is not an object", hint="re-create the file")
        latency = model.get("latency") or {}
        if not isinstance(latency, dict):
            raise EdgecError(f"{source}: {name}.latency is not an object", hint="re-create the file")
        for batch, clocks in latency.items():
            for clock, stats in (clocks or {}).items():
                where = f"{source}: {name} batch {batch} {clock} latency"
                samples = stats.get("samples_ms") if isinstance(stats, dict) else None
                if not isinstance(samples, list) or (require_samples and not samples):
                    raise EdgecError(f"{where} has an empty or missing sample list (samples_ms)",
                                     hint="the gate needs the raw samples; re-run edgec bench "
                                          "without editing the file")
                if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
                           for v in samples):
                    raise EdgecError(f"{where}: samples must be finite numbers >= 0",
                                     hint="re-run edgec bench")


def iter_latency(model: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(batch, clock kind, stats dict)`` for every latency entry of one model, batch-ordered.

    Example:
        >>> list(iter_latency({"latency": {"8": {"host": {}}, "1": {"host": {}}}}))
        [('1', 'host', {}), ('8', 'host', {})]
    """
    latency = model.get("latency") or {}
    for batch in sorted(latency, key=lambda b: int(b) if str(b).isdigit() else 0):
        for clock, stats in sorted((latency[batch] or {}).items()):
            yield batch, clock, stats


def stability_warnings(doc: dict[str, Any]) -> list[str]:
    """One warning per latency entry whose coefficient of variation is above trtexec's 2.5%.

    Example:
        >>> stability_warnings(doc)                                  # doctest: +SKIP
        ['m.onnx batch 1 (host): coefficient of variation 7.1% > 2.5%: ...']
    """
    out = []
    for name, model in doc["models"].items():
        for batch, kind, s in iter_latency(model):
            if s["cv"] > STABLE_CV:
                out.append(f"{name} batch {batch} ({kind}): coefficient of variation {s['cv']:.1%} "
                           f"> {STABLE_CV:.1%}: the measurement is not stable (pin clocks, close "
                           "other programs, or run longer)")
    return out


def build_results(report: dict[str, Any], bench: dict[str, Any] | None) -> dict[str, Any]:
    """The results document of an `edgec build`: the report's params/flops/bytes/accuracy per model,
    merged with the bench stage's measurements (``bench.json``; ``None`` when bench is disabled).

    Example:
        >>> doc = build_results(report, json.loads(Path("bench-.../bench.json").read_text()))  # doctest: +SKIP
    """
    bench = bench or {}
    old = bool(bench) and not bench.get("machine")  # a bench stage cached by an earlier edgec
    if bench.get("machine"):
        doc = new_results("edgec build", bench.get("device", "cpu"), bench.get("settings", {}),
                          machine=bench["machine"])
        doc["machine_fingerprint"] = bench.get("machine_fingerprint", {})
        doc["warnings"] = list(bench.get("warnings", []))
    else:
        doc = new_results("edgec build", "cpu", {"bench": "disabled in the recipe"})
    if old:
        doc["warnings"].append("the cached bench stage predates results.json, so no latency is "
                               "recorded; run `edgec build --force` to benchmark again")
        bench = {}
    doc["recipe"] = report["recipe"]["name"]
    measured = bench.get("models", {})
    for name, m in report["models"].items():
        entry = {"file": m["file"], "bytes": m["bytes"], "params": m["params"], "flops": m["flops"],
                 "accuracy": m["accuracy"], "runtime": m["runtime"]}
        if m.get("quantization"):  # INT8 flavour + layers kept in float: the gate compares bytes only when equal
            entry["quantization"] = m["quantization"]
        entry.update({k: v for k, v in measured.get(name, {}).items() if k not in entry})
        doc["models"][name] = entry
    doc["warnings"] += stability_warnings(doc)
    return doc


def write_build_results(out: Path, report: dict[str, Any], artifacts: dict[str, Any]) -> Path:
    """Write ``out/results.json`` for a finished build (called by :func:`edgec.report.write_report`).

    Example:
        >>> write_build_results(Path("runs/digits"), report, arts)     # doctest: +SKIP
        PosixPath('runs/digits/results.json')
    """
    bench = None
    if "bench" in artifacts:
        bench = json.loads(artifacts["bench"].file("bench.json").read_text(encoding="utf-8"))
    return write_results(out / "results.json", build_results(report, bench))

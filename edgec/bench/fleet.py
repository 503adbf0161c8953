"""A fleet report: `edgec bench` results from many devices merged into one comparison.

Each input is a results file (``edgec.bench/1``, :mod:`edgec.bench.results`) written on one device
(an Orin Nano, an AGX Orin, a desktop GPU, a CI CPU...). The report has one row per device x model x
batch x clock with p50/p99 latency, throughput and, where measured, joules per inference; it is
printed as a rich table and written as ``fleet.md``, ``fleet.json`` and ``fleet.png`` (p50 with
p99 whiskers per model and device, and energy per inference where any device measured it).

Devices are named from their machine description (Jetson model, GPU name, else CPU model and host);
two files from the same kind of device get their file names appended.

Example:
    >>> fleet = load_fleet(["results/orin-nano.json", "results/agx-orin.json"])   # doctest: +SKIP
    >>> write_fleet(fleet, "fleet/")                                            # doctest: +SKIP
    [PosixPath('fleet/fleet.md'), PosixPath('fleet/fleet.json'), PosixPath('fleet/fleet.png')]
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from edgec.atomic import atomic_write_bytes, atomic_write_text
from edgec.bench.plots import _png, _pyplot
from edgec.bench.results import SCHEMA, iter_latency, validate_results
from edgec.console import say
from edgec.errors import EdgecError

__all__ = ["FLEET_SCHEMA", "Fleet", "device_label", "load_fleet", "fleet_rows", "fleet_table",
           "fleet_markdown", "fleet_figure", "write_fleet", "report_fleet"]

FLEET_SCHEMA = "edgec.fleet/1"
COLUMNS = ("device", "model", "runtime", "batch", "clock", "p50_ms", "p99_ms", "throughput",
           "joules_per_inference")


@dataclass
class Fleet:
    """The loaded results files, in the order given, each with its device label."""

    labels: list[str]
    files: list[Path]
    docs: list[dict[str, Any]]


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise EdgecError(f"results file not found: {path}",
                         hint="pass files written by `edgec bench --json FILE` or `edgec build`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgecError(f"{path} is not valid JSON ({exc})",
                         hint="the file is truncated or not a results file; re-create it with edgec bench") from None
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if not isinstance(schema, str) or not schema.startswith("edgec.bench/"):
        raise EdgecError(f"{path} is not an edgec bench results file (schema {schema!r})",
                         hint="pass files written by `edgec bench --json FILE` or `edgec build` (results.json)")
    return doc


def device_label(doc: dict[str, Any]) -> str:
    """A short name for the device a results document was measured on.

    Example:
        >>> device_label({"device": "jetson", "machine": {"jetson": {"model": "NVIDIA Jetson Orin Nano"}}})
        'NVIDIA Jetson Orin Nano'
    """
    m = doc.get("machine") or {}
    jetson, gpu, cpu = m.get("jetson") or {}, m.get("gpu") or {}, m.get("cpu") or {}
    if jetson.get("model"):
        return str(jetson["model"])
    if doc.get("device") == "cuda" and (gpu.get("name") or gpu.get("model")):
        return str(gpu.get("name") or gpu.get("model"))
    name = cpu.get("model") or doc.get("device") or "unknown device"
    return f"{name} ({m['hostname']})" if m.get("hostname") else str(name)


def load_fleet(paths: Sequence[str | os.PathLike[str]]) -> Fleet:
    """Read and validate results files from several devices; every problem is an EdgecError.

    Files of different schema versions are refused together (naming each), before any is used.

    Example:
        >>> load_fleet(["a.json", "b.json"]).labels                    # doctest: +SKIP
        ['NVIDIA Jetson Orin Nano', 'NVIDIA GeForce RTX 4090']
    """
    if not paths:
        raise EdgecError("no results files given", hint="e.g. edgec report fleet results/*.json")
    files = [Path(p) for p in paths]
    docs = [_read(p) for p in files]
    schemas = {p: d["schema"] for p, d in zip(files, docs)}
    if len(set(schemas.values())) > 1:
        listed = ", ".join(f"{p.name}: {s}" for p, s in schemas.items())
        raise EdgecError(f"the results files mix schema versions ({listed}); this edgec reads {SCHEMA}",
                         hint="re-run edgec bench with one edgec version on every device")
    for p, d in zip(files, docs):
        validate_results(d, str(p))
    base = [device_label(d) for d in docs]
    labels = [f"{b} [{f.stem}]" if base.count(b) > 1 else b for b, f in zip(base, files)]
    return Fleet(labels, files, docs)


def fleet_rows(fleet: Fleet) -> list[dict[str, Any]]:
    """One row per device x model x batch x clock (see ``COLUMNS``); energy only on host rows."""
    rows = []
    for label, doc in zip(fleet.labels, fleet.docs):
        for name, model in doc["models"].items():
            energy = (model.get("energy") or {}).get("batches", {})
            for batch, clock, s in iter_latency(model):
                e = energy.get(batch) if clock == "host" else None
                rows.append({"device": label, "model": name, "runtime": model.get("runtime"),
                             "batch": int(batch), "clock": clock, "p50_ms": s["p50"], "p99_ms": s["p99"],
                             "throughput": s.get("throughput"),
                             "joules_per_inference": e.get("joules_per_inference") if e else None})
    return rows


def _cell(value: Any, fmt: str = "{:.4g}") -> str:
    return "–" if value is None else fmt.format(value) if isinstance(value, float) else str(value)


def fleet_table(rows: list[dict[str, Any]]) -> Any:
    """A ``rich.table.Table`` of the rows, grouped by model then device."""
    devices = sorted({r["device"] for r in rows})
    table = Table(title=f"edgec fleet: {len(devices)} device(s)", title_justify="left")
    for col in ("model (runtime)", "batch", "device", "clock", "p50 ms", "p99 ms", "items/s", "J/inf"):
        table.add_column(col, justify="left" if col in ("model (runtime)", "device", "clock") else "right")
    for r in sorted(rows, key=lambda r: (r["model"], r["batch"], r["device"], r["clock"])):
        table.add_row(f"{r['model']} ({r['runtime']})", str(r["batch"]), r["device"], r["clock"],
                      _cell(r["p50_ms"]), _cell(r["p99_ms"]), _cell(r["throughput"], "{:,.0f}"),
                      _cell(r["joules_per_inference"]))
    return table


def fleet_markdown(fleet: Fleet, rows: list[dict[str, Any]]) -> str:
    """``fleet.md``: the devices (with their files) and the comparison table."""
    lines = ["# edgec fleet report", "", "| device | file | device kind | edgec |", "|---|---|---|---|"]
    lines += [f"| {label} | {f.name} | {d.get('device')} | {d.get('edgec_version')} |"
              for label, f, d in zip(fleet.labels, fleet.files, fleet.docs)]
    lines += ["", "Latency is host wall clock unless the clock says `device` (GPU time).", "",
              "| model | runtime | batch | device | clock | p50 ms | p99 ms | items/s | J/inference |",
              "|---|---|---:|---|---|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["batch"], r["device"], r["clock"])):
        lines.append(f"| {r['model']} | {r['runtime']} | {r['batch']} | {r['device']} | {r['clock']} | "
                     f"{_cell(r['p50_ms'])} | {_cell(r['p99_ms'])} | {_cell(r['throughput'], '{:,.0f}')} | "
                     f"{_cell(r['joules_per_inference'])} |")
    return "\n".join(lines) + "\n"


def fleet_figure(rows: list[dict[str, Any]]) -> bytes:
    """PNG: per model, one bar per device (p50, whisker to p99) at the smallest batch, host clock;
    a second panel with joules per inference when any device measured energy."""
    host = [r for r in rows if r["clock"] == "host"]
    smallest = min(r["batch"] for r in host) if host else 1
    host = [r for r in host if r["batch"] == smallest]
    models = sorted({r["model"] for r in host})
    devices = sorted({r["device"] for r in host})
    energy = [r for r in host if r["joules_per_inference"] is not None]
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 if energy else 1, figsize=(12 if energy else 8, 4.5), squeeze=False)
    width = 0.8 / max(len(devices), 1)
    x = np.arange(len(models))
    by = {(r["model"], r["device"]): r for r in host}
    for i, dev in enumerate(devices):
        p50 = [by[(m, dev)]["p50_ms"] if (m, dev) in by else np.nan for m in models]
        p99 = [by[(m, dev)]["p99_ms"] if (m, dev) in by else np.nan for m in models]
        err = np.clip(np.array(p99) - np.array(p50), 0, None)
        axes[0][0].bar(x + i * width, p50, width, yerr=[np.zeros_like(err), err], capsize=3, label=dev)
        if energy:
            joules = [by[(m, dev)]["joules_per_inference"] if (m, dev) in by and
                      by[(m, dev)]["joules_per_inference"] is not None else np.nan for m in models]
            axes[0][1].bar(x + i * width, joules, width, label=dev)
    panels = [(axes[0][0], f"latency at batch {smallest} (bar p50, whisker p99)", "ms")]
    if energy:
        panels.append((axes[0][1], f"energy per inference at batch {smallest}", "J"))
    for ax, title, unit in panels:
        ax.set_xticks(x + width * (len(devices) - 1) / 2, models, rotation=20, ha="right")
        ax.set_title(title)
        ax.set_ylabel(unit)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    return _png(fig)


def write_fleet(fleet: Fleet, folder: str | os.PathLike[str]) -> list[Path]:
    """Write ``fleet.md``, ``fleet.json`` and ``fleet.png`` into ``folder`` (atomically)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rows = fleet_rows(fleet)
    doc = {"schema": FLEET_SCHEMA, "results_schema": SCHEMA,
           "devices": [{"label": label, "file": str(f), "device": d.get("device"),
                        "machine_fingerprint": d.get("machine_fingerprint"), "edgec_version": d.get("edgec_version"),
                        "created_utc": d.get("created_utc")}
                       for label, f, d in zip(fleet.labels, fleet.files, fleet.docs)],
           "rows": rows}
    return [atomic_write_text(out / "fleet.md", fleet_markdown(fleet, rows)),
            atomic_write_text(out / "fleet.json", json.dumps(doc, indent=1, sort_keys=True) + "\n"),
            atomic_write_bytes(out / "fleet.png", fleet_figure(rows))]


def report_fleet(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str] | None = None) -> Fleet:
    """`edgec report fleet`: load, print the table on stdout, write the files into ``out`` if given."""
    fleet = load_fleet(paths)
    rows = fleet_rows(fleet)
    # A terminal keeps its width; logs and pipes get a wide table instead of truncated cells.
    Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(fleet_table(rows))
    if out is not None:
        for p in write_fleet(fleet, out):
            say(f"wrote {p}")
    return fleet

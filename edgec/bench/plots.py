"""How a results document looks to a person: a rich table and PNG plots (matplotlib, Agg backend).

Per model and batch size, one PNG with the latency histogram and the empirical CDF (p50/p90/p99
marked) for every clock; per model with energy, one PNG of the power trace of each batch's window
with the idle baseline.

Example:
    >>> from edgec.bench.plots import write_plots
    >>> write_plots(load_results("bench.json"), "plots/")          # doctest: +SKIP
    [PosixPath('plots/model.int8.onnx-b1-latency.png'), ...]
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from edgec.atomic import atomic_write_bytes
from edgec.bench.results import iter_latency
from edgec.console import console, warn

__all__ = ["results_table", "print_results", "write_plots", "latency_figure", "power_figure"]


def results_table(doc: dict[str, Any]) -> Any:
    """A ``rich.table.Table`` of every model x batch x clock (and J/inference when measured).

    Example:
        >>> console.print(results_table(doc))                          # doctest: +SKIP
    """
    table = Table(title=f"edgec bench on {doc.get('device', '?')}", title_justify="left")
    for col in ("model (runtime)", "batch", "clock", "p50 ms", "p90 ms", "p99 ms", "mean ms", "cv",
                "runs", "items/s", "J/inf", "J/inf above idle"):
        table.add_column(col, justify="left" if col in ("model (runtime)", "clock") else "right")
    for name, model in doc["models"].items():
        energy = (model.get("energy") or {}).get("batches", {})
        for batch, kind, s in iter_latency(model):
            e = energy.get(batch) if kind == "host" else None
            table.add_row(f"{name} ({model.get('runtime', '?')})", batch, kind, f"{s['p50']:.4g}",
                          f"{s['p90']:.4g}", f"{s['p99']:.4g}", f"{s['mean']:.4g}", f"{s['cv']:.1%}",
                          str(s["count"]), f"{s['throughput']:,.0f}",
                          f"{e['joules_per_inference']:.4g}" if e else "–",
                          f"{e['joules_per_inference_above_idle']:.4g}" if e else "–")
    skipped = [(n, m["energy"]["skipped"]) for n, m in doc["models"].items()
               if "skipped" in (m.get("energy") or {})]
    if skipped:
        table.caption = "energy not measured: " + skipped[0][1]
    return table


def print_results(doc: dict[str, Any]) -> None:
    """Print the table and the document's warnings on edgec's console (stderr).

    Example:
        >>> print_results(load_results("bench.json"))                 # doctest: +SKIP
    """
    # A terminal keeps its width; logs and pipes get a wide table instead of truncated cells.
    out = console if console.is_terminal else Console(stderr=True, highlight=False, width=150)
    out.print(results_table(doc))
    for w in doc.get("warnings", []):
        warn(w)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _pyplot().close(fig)
    return buf.getvalue()


def latency_figure(name: str, batch: str, clocks: dict[str, dict[str, Any]]) -> bytes:
    """PNG bytes: histogram of the bulk (left) and empirical CDF on a log axis (right) per clock.

    Example:
        >>> png = latency_figure("m.onnx", "1", {"host": stats.to_dict()})   # doctest: +SKIP
    """
    plt = _pyplot()
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for kind, s in clocks.items():
        a = np.sort(np.asarray(s["samples_ms"], dtype=float))
        # The histogram shows the bulk (up to p99, at most 3x the median): a few preempted runs at
        # 100x would squeeze it into one bar. The CDF, on a log axis, shows everything.
        hi = min(float(np.percentile(a, 99)), 3 * float(np.median(a))) if a.size > 20 else a[-1]
        hidden = int((a > hi).sum())
        hist.hist(a[a <= hi], bins=min(80, max(10, a.size // 20)), alpha=0.6,
                  label=f"{kind}: {s['clock']}" + (f"\n{hidden} slower runs not shown (max "
                                                  f"{a[-1]:.3g} ms)" if hidden else ""))
        cdf.plot(a, np.arange(1, a.size + 1) / a.size, label=kind)
        if a[0] > 0:
            cdf.set_xscale("log")
        for q in ("p50", "p90", "p99"):
            cdf.axvline(s[q], ls=":", lw=0.8, color="grey")
            cdf.annotate(q, (s[q], 0.02), fontsize=7, rotation=90, color="grey")
    hist.set(xlabel="latency (ms)", ylabel="runs", title=f"{name}, batch {batch}: histogram")
    cdf.set(xlabel="latency (ms, log scale)", ylabel="fraction of runs <= x", ylim=(0, 1.01),
            title=f"{name}, batch {batch}: CDF")
    for ax in (hist, cdf):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def power_figure(name: str, energy: dict[str, Any]) -> bytes:
    """PNG bytes: power over time in each batch's energy window, with the idle baseline.

    Example:
        >>> png = power_figure("m.onnx", doc["models"]["m.onnx"]["energy"])  # doctest: +SKIP
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    for batch, r in energy["batches"].items():
        trace = np.asarray(r.get("trace") or [[0.0, r["avg_power_w"]]], dtype=float)
        ax.plot(trace[:, 0], trace[:, 1], label=f"batch {batch}: {r['avg_power_w']:.2f} W avg, "
                                                f"{r['joules_per_inference']:.3g} J/inf")
    ax.axhline(energy.get("idle_power_w", 0.0), ls="--", color="grey",
               label=f"idle {energy.get('idle_power_w', 0.0):.2f} W")
    ax.set(xlabel="time in window (s)", ylabel="power (W)",
           title=f"{name}: power ({energy.get('meter', '?')})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def write_plots(doc: dict[str, Any], folder: str | os.PathLike[str]) -> list[Path]:
    """Write ``<model>-b<batch>-latency.png`` per model and batch, and ``<model>-power.png`` per
    model with energy, atomically into ``folder``; return the paths.

    Example:
        >>> [p.name for p in write_plots(doc, "plots")]               # doctest: +SKIP
        ['model.onnx-b1-latency.png', 'model.onnx-b8-latency.png']
    """
    out, written = Path(folder), []
    for name, model in doc["models"].items():
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        by_batch: dict[str, dict[str, Any]] = {}
        for batch, kind, s in iter_latency(model):
            by_batch.setdefault(batch, {})[kind] = s
        for batch, clocks in by_batch.items():
            if any(s.get("samples_ms") for s in clocks.values()):
                path = out / f"{stem}-b{batch}-latency.png"
                written.append(atomic_write_bytes(path, latency_figure(name, batch, clocks)))
        energy = model.get("energy") or {}
        if energy.get("batches"):
            path = out / f"{stem}-power.png"
            written.append(atomic_write_bytes(path, power_figure(name, energy)))
    return written

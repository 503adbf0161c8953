"""The `edgec` command line (Typer). The only module that imports typer.

Each command parses its arguments and calls ONE library function; everything a command does can
be done from Python. Exit codes: 0 success, 1 a run that failed (e.g. verification),
2 bad usage or bad input, 130 interrupted (Ctrl-C; finished stages are kept).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgec import __version__
from edgec.console import console
from edgec.errors import EdgecError

app = typer.Typer(name="edgec", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="edgec: teacher -> compressed student -> ONNX / INT8 -> verified, benchmarked deployment.")
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgec {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def build(
    recipe: Annotated[str, typer.Argument(help="Built-in recipe name (see `edgec recipes`) or a recipe .yaml file.")] = "digits",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default: runs/<recipe name>).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Override the recipe's data.path.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-run every stage instead of reusing finished ones.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    nproc: Annotated[Optional[int], typer.Option("--nproc", help="Train on N local processes (one per GPU, else CPU/gloo): "
                                                 "launches torchrun; the recipe's batch_size is the global batch.")] = None,
) -> None:
    """Run a recipe end to end: teacher, distill, export, quantize, engine, verify, bench, report."""
    if nproc is not None:
        from edgec.distributed import launch

        args = [*(["--debug"] if _state["debug"] else []), "build", recipe,
                *(["--out", str(out)] if out is not None else []), *(["--data", str(data)] if data is not None else []),
                *(["--force"] if force else []), *(["--quiet"] if quiet else [])]
        code = launch(nproc, args)
        if code == 130:
            _interrupted()
        raise typer.Exit(code)
    from edgec.pipeline import build as run_build

    try:
        run_build(recipe, out=out, data_path=data, force=force, progress=not quiet)
    except KeyboardInterrupt:  # inside the command, or Typer would turn it into "Aborted!" (exit 1)
        _interrupted()


@app.command()
def recipes(
    show: Annotated[Optional[str], typer.Option("--show", help="Print one built-in recipe's YAML.")] = None,
) -> None:
    """List the built-in recipes (or print one with --show NAME)."""
    from edgec.recipe import builtin_recipes, recipe_text

    if show:
        typer.echo(recipe_text(show)[0], nl=False)
        return
    listed = builtin_recipes()
    width = max(map(len, listed), default=0)
    for name, description in listed.items():
        console.print(f"[bold]{name:<{width}}[/] {description}", soft_wrap=True)


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
) -> None:
    """What this machine can do: torch, ONNX Runtime providers, TensorRT, CUDA, pycuda, Jetson, and what to install."""
    from edgec.doctor import diagnose, render

    report = diagnose()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        console.print(render(report))


def _numbers(text: str, option: str, kind: type = int, example: str = "1,8,32") -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EdgecError(f"{option} {text!r}: expected comma-separated {'integers' if kind is int else 'numbers'}",
                         hint=f"e.g. {option} {example}") from None
    if not values:
        raise EdgecError(f"{option} is empty", hint=f"e.g. {option} {example}")
    return values


def _int_list(text: str, option: str) -> tuple[int, ...]:
    return tuple(_numbers(text.replace("x", ","), option))


@app.command()
def bench(
    model: Annotated[str, typer.Argument(help="Model file: .onnx, .safetensors (edgec model), .plan/.engine (TensorRT, with its engine.json).")],
    device: Annotated[str, typer.Option(help="cpu | cuda | jetson.")] = "cpu",
    runtime: Annotated[str, typer.Option(help="auto | torch | onnxruntime | tensorrt | kernels (a .safetensors student on edgec's CUDA kernels).")] = "auto",
    batch: Annotated[str, typer.Option(help="Batch sizes to sweep, e.g. 1,8,32.")] = "1",
    shape: Annotated[Optional[str], typer.Option(help="One sample's input shape without the batch, e.g. 1,28,28.")] = None,
    deploy: Annotated[Optional[Path], typer.Option(help="deploy.json giving the input shape (default: beside the model).")] = None,
    energy: Annotated[str, typer.Option(help="auto | off | a meter name (ina3221-hwmon, tegrastats, nvml, rapl...).")] = "auto",
    providers: Annotated[Optional[str], typer.Option(help="ONNX Runtime providers in order, e.g. tensorrt,cuda,cpu (TensorRT only when named).")] = None,
    warmup_runs: Annotated[int, typer.Option(help="Warm-up calls (at least).")] = 10,
    warmup_s: Annotated[float, typer.Option(help="Warm-up seconds (at least).")] = 0.2,
    min_runs: Annotated[int, typer.Option(help="Timed runs per batch size (at least).")] = 100,
    min_duration: Annotated[float, typer.Option(help="Timed seconds per batch size (at least).")] = 1.0,
    threads: Annotated[Optional[int], typer.Option(help="Intra-op threads (ORT) / torch threads.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the results file (schema edgec.bench/1).")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write latency and power PNGs into this folder.")] = None,
) -> None:
    """Latency (and energy) of one model: warm-up, timed runs, percentiles, batch sweep, results JSON."""
    from edgec.bench.run import BenchConfig, Timing, run_bench

    run_bench(BenchConfig(
        model, device=device, runtime=runtime, batches=_int_list(batch, "--batch"),
        shape=_int_list(shape, "--shape") if shape else None, deploy=deploy, energy=energy,
        providers=tuple(p.strip() for p in providers.split(",") if p.strip()) if providers else None,
        threads=threads, json_out=json_out, plot_dir=plot,
        timing=Timing(warmup_runs=warmup_runs, warmup_s=warmup_s, min_runs=min_runs, min_duration_s=min_duration)))


@app.command()
def gate(
    current: Annotated[str, typer.Argument(help="Results file to check (edgec bench --json, or runs/<name>/results.json).")],
    baseline: Annotated[str, typer.Option("--baseline", help="Results file to compare against.")],
    max_latency_regression: Annotated[Optional[str], typer.Option(help="Allowed slowdown, e.g. 5%.")] = None,
    max_energy_regression: Annotated[Optional[str], typer.Option(help="Allowed J/inference increase, e.g. 10%.")] = None,
    max_accuracy_drop: Annotated[Optional[float], typer.Option(help="Allowed accuracy drop in percentage points.")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="Significance level of the test (default 0.01).")] = None,
    latency: Annotated[Optional[str], typer.Option(help="gate | report-only | off.")] = None,
    energy: Annotated[Optional[str], typer.Option(help="gate | report-only | off.")] = None,
    allow_mismatch: Annotated[bool, typer.Option("--allow-mismatch", help="Compare results from different machines/settings anyway.")] = False,
    update_baseline: Annotated[bool, typer.Option("--update-baseline", help="After comparing, write CURRENT over the baseline.")] = False,
    config: Annotated[Optional[Path], typer.Option(help="Gate config TOML (default: ./.edgec-gate.toml when present).")] = None,
    min_int8_layers: Annotated[Optional[float], typer.Option(help="TensorRT engines: least share of layers running in INT8, e.g. 0.9.")] = None,
    max_fallback_layers: Annotated[Optional[int], typer.Option(help="TensorRT engines: most layers that fell back from INT8 to float.")] = None,
) -> None:
    """Compare CURRENT with a baseline: exit 0 pass, 1 real regression, 2 bad input or incomparable files."""
    from edgec.bench.gate import load_gate_config, run_gate

    settings = load_gate_config(config, max_latency_regression=max_latency_regression,
                                max_energy_regression=max_energy_regression, max_accuracy_drop=max_accuracy_drop,
                                alpha=alpha, latency=latency, energy=energy, allow_mismatch=allow_mismatch or None,
                                min_int8_layers=min_int8_layers, max_fallback_layers=max_fallback_layers)
    report = run_gate(current, baseline, settings, update_baseline=update_baseline)
    if not (report.passed or update_baseline):
        raise typer.Exit(1)


@app.command()
def engine(
    model: Annotated[Path, typer.Argument(help="A QDQ (INT8) or float ONNX file.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Engine folder (default: <model>-engine/ beside it).")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Let float layers run in FP16.")] = False,
    min_batch: Annotated[int, typer.Option("--min-batch", help="Smallest batch of the optimization profile.")] = 1,
    opt_batch: Annotated[int, typer.Option("--opt-batch", help="Batch TensorRT tunes for.")] = 1,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Largest batch of the optimization profile.")] = 64,
    dla: Annotated[Optional[int], typer.Option("--dla", help="Build for this DLA core (Jetson; FP16, static batch = --opt-batch).")] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Compare the engine with ONNX Runtime on random inputs.")] = True,
    atol: Annotated[float, typer.Option(help="Verification: absolute tolerance.")] = 0.5,
    rtol: Annotated[float, typer.Option(help="Verification: relative tolerance (x |ONNX Runtime output|).")] = 0.1,
) -> None:
    """Build, verify and describe a TensorRT engine from any ONNX file (like trtexec --onnx); exit 1 when the
    engine disagrees with ONNX Runtime, 2 when TensorRT or a GPU is missing."""
    from edgec.backends.tensorrt.from_onnx import describe, engine_from_onnx
    from edgec.backends.tensorrt.builder import BuildSettings

    settings = BuildSettings(fp16=fp16, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, dla_core=dla)
    for line in describe(engine_from_onnx(model, out, settings, verify=verify, atol=atol, rtol=rtol)):
        console.print(line, soft_wrap=True, markup=False)


@app.command()
def quantize(
    model: Annotated[Path, typer.Argument(help="An FP32 ONNX image classifier (one NCHW input, (batch, classes) output).")],
    calib: Annotated[Path, typer.Option("--calib", help="Calibration images: a folder (flat or class folders) of png/jpg/bmp/webp.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default: <model>-int8/ beside it).")] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Calibration images to use (a seeded subset when DIR has more).")] = 256,
    accuracy_data: Annotated[Optional[Path], typer.Option("--accuracy-data", help="Labelled images DIR/<class>/...: FP32 vs INT8 accuracy and the accuracy-aware fallback.")] = None,
    image_size: Annotated[Optional[str], typer.Option("--image-size", help="H[,W] the model takes (needed when its height/width are dynamic).")] = None,
    resize: Annotated[Optional[int], typer.Option("--resize", help="Resize the shorter side to this before the centre crop (default: straight to the input size).")] = None,
    mean: Annotated[Optional[str], typer.Option("--mean", help="Per-channel mean on pixels in [0,1], e.g. 0.485,0.456,0.406.")] = None,
    std: Annotated[Optional[str], typer.Option("--std", help="Per-channel std on pixels in [0,1], e.g. 0.229,0.224,0.225.")] = None,
    grayscale: Annotated[bool, typer.Option("--grayscale", help="Read images as grayscale (1-channel models; implied by the model).")] = False,
    deploy: Annotated[Optional[Path], typer.Option("--deploy", help="Take the preprocessing from this deploy.json (or its folder).")] = None,
    flavour: Annotated[str, typer.Option("--flavour", help="CPU INT8 flavour(s): auto | u8s8_reduce_range | reduce_range | u8u8 | u8s8 | s8s8; "
                                         "comma-separated for several files (the first is model.int8.cpu.onnx).")] = "auto",
    method: Annotated[str, typer.Option("--method", help="Calibration: percentile | minmax | entropy.")] = "percentile",
    accuracy_budget: Annotated[float, typer.Option("--accuracy-budget", help="With --accuracy-data: largest INT8 drop in points before layers stay float.")] = 1.0,
    max_float_layers: Annotated[int, typer.Option("--max-float-layers", help="With --accuracy-data: most layers the fallback keeps in float.")] = 3,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """INT8 from an ONNX model trained anywhere: model.int8.onnx (TensorRT), model.int8.cpu.onnx (ONNX Runtime CPU), deploy.json."""
    from edgec.configs import CalibrationConfig
    from edgec.onnx_input import quantize_onnx

    pre = dict(deploy=deploy, image_size=_int_list(image_size, "--image-size") if image_size else None,
               resize=resize, mean=_numbers(mean, "--mean", float, "0.485,0.456,0.406") if mean else None,
               std=_numbers(std, "--std", float, "0.229,0.224,0.225") if std else None, grayscale=grayscale)
    calibration = CalibrationConfig(method=method, samples=samples)  # RecipeError for a bad --method
    quantize_onnx(model, calib, out, preprocess=pre, samples=samples, accuracy_data=accuracy_data,
                  flavours=[f.strip() for f in flavour.split(",") if f.strip()], calibration=calibration,
                  accuracy_budget=accuracy_budget, max_float_layers=max_float_layers, progress=not quiet)


report_app = typer.Typer(name="report", no_args_is_help=True, help="Reports across runs and devices.")
app.add_typer(report_app)


@report_app.command("fleet")
def report_fleet(
    results: Annotated[list[Path], typer.Argument(help="Results files (edgec bench --json / runs/<name>/results.json), one or more per device.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write fleet.md, fleet.json and fleet.png into this folder.")] = None,
) -> None:
    """Merge bench results from many devices into one comparison table (and plot)."""
    from edgec.bench.fleet import report_fleet as run_report

    run_report(results, out)


kernels_app = typer.Typer(name="kernels", no_args_is_help=True, help="edgec's custom CUDA kernels.")
app.add_typer(kernels_app)


@kernels_app.command("check")
def kernels_check(
    arch: Annotated[Optional[list[str]], typer.Option("--arch", help="Target arch, repeatable (default: sm_87, sm_86, sm_90).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable rows on stdout.")] = False,
) -> None:
    """Compile every kernel with nvcc for the target archs (no GPU needed); report registers and spills.

    Exits 1 when a kernel spills to local memory.
    """
    from rich.table import Table

    from edgec.kernels.loader import DEFAULT_ARCHS, check_all

    rows = check_all(tuple(arch) if arch else DEFAULT_ARCHS)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        table = Table(title="edgec kernels check (nvcc -cubin -Xptxas -v)")
        for col in ("kernel", "arch", "registers", "spills (B)", "smem (B)", "ok"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["kernel"], r["arch"], str(r["registers"]), str(r["spills"]), str(r["smem"]),
                          "[green]ok[/]" if r["ok"] else "[red]SPILLS[/]")
        console.print(table)
    if not all(r["ok"] for r in rows):
        raise typer.Exit(1)


@kernels_app.command("bench")
def kernels_bench(
    quick: Annotated[bool, typer.Option("--quick", help="One shape per op, for a smoke run.")] = False,
    iters: Annotated[int, typer.Option(help="Timed runs per case.")] = 100,
    warmup: Annotated[int, typer.Option(help="Warm-up runs per case.")] = 20,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the results JSON here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Results JSON on stdout instead of the table.")] = False,
) -> None:
    """Time the kernels against torch's cuDNN/cuBLAS ops on this GPU (needs a CUDA GPU, pycuda, nvcc; else exit 2)."""
    from edgec.atomic import atomic_write_json
    from edgec.console import say
    from edgec.kernels.bench import format_table, run

    doc = run(quick=quick, iters=iters, warmup=warmup, progress=say)
    typer.echo(json.dumps(doc, indent=2) if as_json else format_table(doc))
    if out is not None:
        atomic_write_json(out, doc)
        say(f"wrote {out}")


def main() -> None:
    """Console-script entry point: run the app and map errors to exit codes.

    Typer handles usage errors itself (exit 2); edgec's own errors print one message and exit with
    their code; Ctrl-C exits 130; anything else is a bug and says so.
    """
    from rich.markup import escape

    try:
        app()
    except EdgecError as exc:
        if _state["debug"]:
            traceback.print_exc()
        # Messages are plain text: escape them, or `pip install 'edgec[gpu]'` loses its "[gpu]" to markup.
        console.print(f"[bold red]error:[/] {escape(exc.message)}", soft_wrap=True)
        if exc.hint:
            console.print(f"  [yellow]->[/] {escape(exc.hint)}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _interrupted()
    except Exception as exc:  # noqa: BLE001 - the CLI boundary
        if _state["debug"]:
            raise
        console.print(f"[bold red]internal error[/] ({type(exc).__name__}): {exc}\n"
                      "  -> this is a bug in edgec; run again with --debug for the traceback and please report it",
                      soft_wrap=True)
        sys.exit(1)


def _interrupted() -> None:
    console.print("[yellow]interrupted[/]: finished stages are kept; run the same command to resume.", soft_wrap=True)
    sys.exit(130)

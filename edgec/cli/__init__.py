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
) -> None:
    """Run a recipe end to end: teacher, distill, export, quantize, engine, verify, bench, report."""
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
    for name, description in builtin_recipes().items():
        console.print(f"[bold]{name:<14}[/] {description}", soft_wrap=True)


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


def main() -> None:
    """Console-script entry point: run the app and map errors to exit codes.

    Typer handles usage errors itself (exit 2); edgec's own errors print one message and exit with
    their code; Ctrl-C exits 130; anything else is a bug and says so.
    """
    try:
        app()
    except EdgecError as exc:
        if _state["debug"]:
            traceback.print_exc()
        console.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
        if exc.hint:
            console.print(f"  [yellow]->[/] {exc.hint}", soft_wrap=True)
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

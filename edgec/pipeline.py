"""`edgec build`: run the stage chain of a recipe, reusing every stage that is already finished.

    teacher -> distill -> export -> quantize -> engine -> verify -> bench -> report

Each stage is a plain function ``fn(ctx, work)`` that writes files into ``work.path`` and metrics
into ``work.metrics``; the recipe's task (:mod:`edgec.stages.tasks`) lists them as data and one loop
runs them (:func:`edgec.stages.run_all`). :meth:`edgec.build_context.BuildContext.stage` decides
whether a stage must run at all (see :mod:`edgec.artifacts` for keys and atomic publication).

Under torchrun (:mod:`edgec.distributed`) rank 0 makes every cache decision and publishes every
artifact; stages whose def says they train run on all ranks (the others in a private scratch
folder), the rest on rank 0 alone while the others wait for the published artifact.

Example:
    >>> from edgec.pipeline import build
    >>> result = build("digits", out="runs/digits")
    >>> result.report["models"]["student_int8"]["accuracy"]
    0.97...
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgec import distributed, stages
from edgec.artifacts import Artifact, ArtifactStore, stable_hash
from edgec.build_context import BuildContext
from edgec.console import say
from edgec.recipe import Recipe, load_recipe
from edgec.report import write_report

__all__ = ["BuildContext", "BuildResult", "build"]


@dataclass
class BuildResult:
    """What `edgec build` produced."""

    out: Path
    artifacts: dict[str, Artifact]
    report: dict[str, Any]
    seconds: float
    reused: list[str]
    ran: list[str]


def build(recipe: Recipe | str | Path = "digits", *, out: str | Path | None = None,
          data_path: str | Path | None = None, force: bool = False,
          progress: bool = True) -> BuildResult:
    """Run (or resume) the whole pipeline of ``recipe`` into ``out`` (default ``runs/<name>``).

    Launched by torchrun, every rank calls this with the same arguments (see :mod:`edgec.distributed`).
    """
    with distributed.session():
        return _build(recipe, out=out, data_path=data_path, force=force, progress=progress)


def _build(recipe: Recipe | str | Path, *, out: str | Path | None, data_path: str | Path | None,
           force: bool, progress: bool) -> BuildResult:
    t0 = time.perf_counter()
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, data_path=data_path)
    elif data_path is not None:
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"path": str(data_path)})})
    store = ArtifactStore(Path(out) if out is not None else Path("runs") / recipe.name)

    def prepare() -> None:
        store.ensure_writable()
        if force:
            store.clear()

    distributed.from_main(prepare)
    ctx = BuildContext(recipe, store, progress=progress and distributed.is_main(), force=force,
                       task=stages.task_for(recipe))
    if distributed.active():
        fingerprint = ctx.dataset.fingerprint
        distributed.check_agreement("recipe and data", stable_hash([recipe.model_dump(mode="json"), fingerprint]),
                                    f"(recipe {recipe.name!r}, data {fingerprint})")
        say(f"[bold]distributed[/]: {distributed.world_size()} ranks, global batch = recipe batch_size")
    say(f"[bold]edgec build[/] {recipe.name} -> {store.root}")
    arts = stages.run_all(ctx)
    report = distributed.from_main(lambda: write_report(ctx, arts))
    seconds = time.perf_counter() - t0
    say(f"[bold green]done[/] in {seconds:.1f} s: {store.root / 'report.md'}")
    return BuildResult(store.root, arts, report, seconds, ctx.reused, ctx.ran)

"""`edgec build`: run the stage chain of a recipe, reusing every stage that is already finished.

    teacher -> distill -> export -> quantize -> engine -> verify -> bench -> report

Each stage is a plain function ``fn(ctx, work)`` (see :mod:`edgec.stages`) that writes
files into ``work.path`` and metrics into ``work.metrics``; :meth:`BuildContext.stage` decides
whether it must run at all (see :mod:`edgec.artifacts` for keys and atomic publication).

Example:
    >>> from edgec.pipeline import build
    >>> result = build("digits", out="runs/digits")
    >>> result.report["models"]["student_int8"]["accuracy"]
    0.97...
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgec.artifacts import Artifact, ArtifactStore, StageWork
from edgec.console import say
from edgec.recipe import Recipe, load_recipe


@dataclass
class BuildContext:
    """What every stage can see: the recipe, the run's store, the dataset (loaded once)."""

    recipe: Recipe
    store: ArtifactStore
    progress: bool = True
    force: bool = False
    reused: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    _dataset: Any = None

    @property
    def dataset(self):  # -> edgec.data.Dataset
        if self._dataset is None:
            from edgec.data import load_dataset

            d = self.recipe.data
            self._dataset = load_dataset(d.name, d.path, val_fraction=d.val_fraction,
                                         test_fraction=d.test_fraction, seed=self.recipe.seed,
                                         limit=d.limit, synthetic=d.synthetic)
        return self._dataset

    def stage(self, name: str, config: dict[str, Any], parents: list[Artifact],
              fn: Callable[[BuildContext, StageWork], None]) -> Artifact:
        """Return the finished artifact of ``name``: reused if intact, else built by ``fn``."""
        key = self.store.key(name, config, parents)
        if not self.force:
            found = self.store.find(name, key)
            if found is not None:
                self.reused.append(name)
                say(f"[green]✓[/] [bold]{name}[/] reused ({found.path.name})")
                return found
        say(f"[cyan]▶[/] [bold]{name}[/] ({name}-{key})")
        t0 = time.perf_counter()
        with self.store.build(name, key, config=config, parents=parents) as work:
            fn(self, work)
        self.ran.append(name)
        say(f"[green]✓[/] [bold]{name}[/] done in {time.perf_counter() - t0:.1f} s")
        assert work.artifact is not None
        return work.artifact


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
    """Run (or resume) the whole pipeline of ``recipe`` into ``out`` (default ``runs/<name>``)."""
    from edgec import stages
    from edgec.report import write_report

    t0 = time.perf_counter()
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, data_path=data_path)
    elif data_path is not None:
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"path": str(data_path)})})
    store = ArtifactStore(Path(out) if out is not None else Path("runs") / recipe.name)
    store.ensure_writable()
    if force:
        store.clear()
    ctx = BuildContext(recipe, store, progress=progress, force=force)
    say(f"[bold]edgec build[/] {recipe.name} -> {store.root}")
    arts = stages.run_all(ctx)
    report = write_report(ctx, arts)
    seconds = time.perf_counter() - t0
    say(f"[bold green]done[/] in {seconds:.1f} s: {store.root / 'report.md'}")
    return BuildResult(store.root, arts, report, seconds, ctx.reused, ctx.ran)

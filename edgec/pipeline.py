"""`edgec build`: run the stage chain of a recipe, reusing every stage that is already finished.

    teacher -> distill -> export -> quantize -> engine -> verify -> bench -> report

Each stage is a plain function ``fn(ctx, work)`` (see :mod:`edgec.stages`) that writes
files into ``work.path`` and metrics into ``work.metrics``; :meth:`BuildContext.stage` decides
whether it must run at all (see :mod:`edgec.artifacts` for keys and atomic publication).

Under torchrun (:mod:`edgec.distributed`) rank 0 makes every cache decision and publishes every
artifact; training stages run on all ranks (the others in a private scratch folder), the rest on
rank 0 alone while the others wait for the published artifact.

Example:
    >>> from edgec.pipeline import build
    >>> result = build("digits", out="runs/digits")
    >>> result.report["models"]["student_int8"]["accuracy"]
    0.97...
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgec import distributed
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
    def dataset(self):  # -> edgec.data.Dataset, or edgec.text.data.TextDataset for text recipes
        if self._dataset is None and self.recipe.data.name == "sst2":  # text: token ids, not images
            from edgec.text.data import load_sst2

            d = self.recipe.data
            self._dataset = load_sst2(d.path, val_fraction=d.val_fraction, seed=self.recipe.seed, limit=d.limit,
                                      test_limit=self.recipe.text.test_limit)
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
            found = distributed.from_main(lambda: self.store.find(name, key))  # rank 0 decides
            if found is not None:
                self.reused.append(name)
                say(f"[green]✓[/] [bold]{name}[/] reused ({found.path.name})")
                return found
        say(f"[cyan]▶[/] [bold]{name}[/] ({name}-{key})")
        t0 = time.perf_counter()

        def publish() -> Artifact:
            with self.store.build(name, key, config=config, parents=parents) as work:
                fn(self, work)
            assert work.artifact is not None
            return work.artifact

        if distributed.active() and self._on_all_ranks(name):
            artifact = publish() if distributed.is_main() else self._train_along(name, key, config, parents, fn)
            artifact = distributed.broadcast_object(artifact)
        else:
            artifact = distributed.from_main(publish)
        self.ran.append(name)
        say(f"[green]✓[/] [bold]{name}[/] done in {time.perf_counter() - t0:.1f} s")
        return artifact

    def _on_all_ranks(self, name: str) -> bool:
        """Training stages run on every rank under torchrun; the others on rank 0 only."""
        return name in TRAINING_STAGES or (name == "quantize" and self.recipe.quantize.method != "ptq")

    def _train_along(self, name: str, key: str, config: dict[str, Any], parents: list[Artifact],
                     fn: Callable[[BuildContext, StageWork], None]) -> None:
        """A rank other than 0 trains with rank 0 in a scratch folder that is then discarded."""
        scratch = Path(tempfile.mkdtemp(prefix=f"edgec-{name}-rank{distributed.rank()}-"))
        try:
            fn(self, StageWork(name, key, scratch, config, parents))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


TRAINING_STAGES = ("teacher", "distill", "prune")  # + quantize when its method trains


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
    from edgec import stages
    from edgec.report import write_report

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
    ctx = BuildContext(recipe, store, progress=progress and distributed.is_main(), force=force)
    if distributed.active():
        from edgec.artifacts import stable_hash

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

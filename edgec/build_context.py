"""What every stage of `edgec build` sees: :class:`BuildContext` (the recipe, the run's store, the dataset,
the task and the facts resolved before any work) and the one place a stage is reused or run.

It lives apart from :mod:`edgec.pipeline` so that the stages and the report can name it without importing
the pipeline that imports them (no pipeline <-> stages <-> report cycle).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec import distributed
from edgec.artifacts import Artifact, ArtifactStore, StageWork
from edgec.console import say
from edgec.recipe import Recipe

if TYPE_CHECKING:
    from edgec.stages.defs import Task

StageFn = Callable[["BuildContext", StageWork], None]


@dataclass
class BuildContext:
    """What every stage can see: the recipe, the run's store, the dataset (loaded once) and its task.

    ``backend`` (the engine backend the recipe resolves to here) and ``train_key`` (what the training
    device adds to training stages' cache configs) are resolved once by :func:`edgec.stages.run_all`
    before any training, so a machine that cannot run the recipe fails in a second.
    """

    recipe: Recipe
    store: ArtifactStore
    progress: bool = True
    force: bool = False
    reused: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    task: Task | None = None  # set by edgec.pipeline (edgec.stages.tasks.task_for)
    backend: str | None = None
    train_key: dict[str, str] = field(default_factory=dict)
    _dataset: Any = None

    @property
    def dataset(self):  # -> edgec.data.Dataset, or edgec.text.data.TextDataset for text recipes
        """The recipe's dataset, loaded by its task on first use."""
        if self._dataset is None:
            assert self.task is not None, "BuildContext.task is not set"  # a wiring bug, not a user error
            self._dataset = self.task.load_dataset(self.recipe)
        return self._dataset

    def stage(self, name: str, config: dict[str, Any], parents: list[Artifact], fn: StageFn, *,
              all_ranks: bool = False) -> Artifact:
        """Return the finished artifact of ``name``: reused if intact, else built by ``fn``.

        Under torchrun a stage with ``all_ranks`` (training) runs on every rank, the others on rank 0 alone.
        """
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

        if distributed.active() and all_ranks:
            artifact = publish() if distributed.is_main() else self._train_along(name, key, config, parents, fn)
            artifact = distributed.broadcast_object(artifact)
        else:
            artifact = distributed.from_main(publish)
        self.ran.append(name)
        say(f"[green]✓[/] [bold]{name}[/] done in {time.perf_counter() - t0:.1f} s")
        return artifact

    def _train_along(self, name: str, key: str, config: dict[str, Any], parents: list[Artifact],
                     fn: StageFn) -> None:
        """A rank other than 0 trains with rank 0 in a scratch folder that is then discarded."""
        scratch = Path(tempfile.mkdtemp(prefix=f"edgec-{name}-rank{distributed.rank()}-"))
        try:
            fn(self, StageWork(name, key, scratch, config, parents))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

"""The stages of `edgec build`, each a function ``(ctx, work) -> None`` from parent artifacts to a new one.

What a stage is (its parents, cache config, when it runs, whether it trains on every rank, its outputs)
is data: a :class:`~edgec.stages.defs.StageDef` in a task's chain (:mod:`edgec.stages.tasks`), run by the
one loop :func:`~edgec.stages.defs.run_chain`. Parents are reached by name with :func:`parent`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgec.artifacts import Artifact
from edgec.stages.defs import StageDef, Task, parent, run_chain
from edgec.stages.tasks import task_for
from edgec.stages.train import device_config

if TYPE_CHECKING:
    from edgec.build_context import BuildContext

__all__ = ["StageDef", "Task", "parent", "run_all", "run_chain", "task_for"]


def run_all(ctx: BuildContext) -> dict[str, Artifact]:
    """Run every stage of ``ctx.recipe``'s task in order; return the artifacts by stage name."""
    if ctx.task is None:
        ctx.task = task_for(ctx.recipe)
    # Fail in a second, before any training, when this machine cannot run the recipe's backend
    # or train.device (no GPU for `cuda` fails here); {} on the CPU.
    ctx.backend = ctx.task.resolve_backend(ctx.recipe.engine.backend)
    ctx.train_key = device_config(ctx)
    return run_chain(ctx, ctx.task)

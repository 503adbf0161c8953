"""Stages as data: a :class:`StageDef` says everything about one stage, a :class:`Task` is a dataset plus its
chain of stage defs, and :func:`run_chain` is the one loop that runs any chain.

A stage def holds its name, its function ``fn(ctx, work)``, its parents (by stage name), its cache config
(what, if changed, must re-run it, read from the recipe), when it is enabled, whether it trains on every
rank under torchrun, and its typed outputs (files and metric keys, checked after every run). Readers of
artifacts (verify, the report, ``deploy/``) ask the def for a stage's files instead of spelling them.

Parents are written as stage names; ``"prune|distill"`` is the first of those that ran, and a trailing
``?`` marks a parent that may be absent (a disabled stage)::

    StageDef("export", convert.export, parents=("prune|distill",),
             config=lambda ctx, arts: {"export": ctx.recipe.section("export")},
             outputs=Outputs(files=("model.onnx",), metrics=("parity", "io"), model="model.onnx"))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec import distributed
from edgec.artifacts import Artifact, StageWork

if TYPE_CHECKING:
    from edgec.build_context import BuildContext
    from edgec.recipe import Recipe

StageFn = Callable[["BuildContext", StageWork], None]
ConfigFn = Callable[["BuildContext", dict[str, Artifact]], dict[str, Any]]


def parent(work: StageWork, stage: str) -> Artifact:
    """The parent artifact of ``work`` produced by ``stage``."""
    for art in work.parents:
        if art.stage == stage:
            return art
    raise KeyError(f"stage {work.stage} has no parent '{stage}'")  # a wiring bug, not a user error


@dataclass(frozen=True)
class Outputs:
    """What a finished stage holds: ``files`` always written, ``metrics`` keys always set, ``optional``
    metric keys it may set (readers may read only declared keys, see :class:`StageMetrics`), and which
    file is the stage's model: ``model`` by name, or the name found in the metric ``model_metric``."""

    files: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    model: str | None = None
    model_metric: str | None = None

    def model_file(self, art: Artifact) -> Path:
        """The model file of a finished artifact of this stage."""
        if self.model_metric is not None:
            return art.file(art.metrics[self.model_metric])
        if self.model is None:
            raise KeyError(f"stage {art.stage} has no model file")  # a wiring bug, not a user error
        return art.file(self.model)

    def missing(self, work: StageWork) -> list[str]:
        """Declared outputs that ``work`` did not produce (empty when the stage kept its contract)."""
        gone = [f for f in self.files if not (work.path / f).is_file()]
        gone += [f"metric {k!r}" for k in self.metrics if k not in work.metrics]
        if self.model_metric is not None and self.model_metric in work.metrics:
            name = work.metrics[self.model_metric]
            if name and not (work.path / name).is_file():
                gone.append(name)
        return gone


class StageMetrics(Mapping[str, Any]):
    """A finished stage's metrics, read through its declared outputs: reading a key the stage's def does
    not declare is a KeyError at once (a renamed or misspelt key cannot silently read as missing)."""

    def __init__(self, art: Artifact, outputs: Outputs):
        self._metrics, self._stage = art.metrics, art.stage
        self._declared = set(outputs.metrics) | set(outputs.optional)

    def _check(self, key: object) -> None:
        if key not in self._declared:  # a wiring bug, not a user error
            raise KeyError(f"stage {self._stage} declares no metric {key!r} (declared: {sorted(self._declared)})")

    def __getitem__(self, key: str) -> Any:
        self._check(key)
        return self._metrics[key]

    def get(self, key: str, default: Any = None) -> Any:
        self._check(key)
        return self._metrics.get(key, default)

    def __contains__(self, key: object) -> bool:
        self._check(key)
        return key in self._metrics

    def __iter__(self) -> Iterator[str]:
        return iter(k for k in self._metrics if k in self._declared)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _always(recipe: Recipe) -> bool:
    return True


def _never(recipe: Recipe) -> bool:
    return False


@dataclass(frozen=True)
class StageDef:
    """One stage of a chain (see the module docstring)."""

    name: str
    fn: StageFn
    config: ConfigFn
    parents: tuple[str, ...] | Callable[[BuildContext], tuple[str, ...]] = ()
    enabled: Callable[[Recipe], bool] = _always
    all_ranks: Callable[[Recipe], bool] = _never  # trains on every rank under torchrun
    outputs: Outputs = field(default_factory=Outputs)

    def parent_names(self, ctx: BuildContext) -> tuple[str, ...]:
        """This stage's parent slots for ``ctx`` (some depend on the engine backend)."""
        return self.parents(ctx) if callable(self.parents) else self.parents

    def run(self, ctx: BuildContext, work: StageWork) -> None:
        """Run the stage function, then check its declared outputs (on the rank that publishes)."""
        self.fn(ctx, work)
        if not distributed.is_main():
            return
        gone = self.outputs.missing(work)
        if gone:  # a stage that breaks its contract is a bug in edgec: readers would fail later, less clearly
            raise RuntimeError(f"stage {self.name} did not produce its declared outputs: {', '.join(gone)}")


def resolve_parents(slots: Sequence[str], arts: dict[str, Artifact]) -> list[Artifact]:
    """Artifacts for parent slots: ``a|b`` is the first of those present, ``name?`` may be absent."""
    found = []
    for slot in slots:
        optional = slot.endswith("?")
        names = slot.rstrip("?").split("|")
        art = next((arts[n] for n in names if n in arts), None)
        if art is None and not optional:
            raise KeyError(f"parent {slot!r} has not run")  # a wiring bug, not a user error
        if art is not None:
            found.append(art)
    return found


@dataclass(frozen=True)
class ModelEntry:
    """A model a build reports: ``name`` (``{kind}`` filled from the artifact's metrics), the stages that may
    hold it (the first present wins), the runtime that runs it and the stages whose metrics give its size."""

    name: str
    stages: tuple[str, ...]
    runtime: str
    size: tuple[str, ...]


@dataclass(frozen=True)
class Task:
    """What a kind of data needs: how to load it, its chain of stages, the models it reports and how each
    model is fed (:mod:`edgec.stages.inputs`)."""

    name: str
    load_dataset: Callable[[Recipe], Any]
    chain: tuple[StageDef, ...]
    models: tuple[ModelEntry, ...]
    inputs: Callable[[BuildContext, StageWork], Any]  # -> edgec.stages.inputs.ModelInputs
    sample: Callable[[Any], Any]  # dataset -> one real model input (the engine stage runs it once)
    resolve_backend: Callable[[str], str]
    verify_hint: str

    def stage(self, name: str) -> StageDef:
        """The def of stage ``name`` in this task's chain."""
        for d in self.chain:
            if d.name == name:
                return d
        raise KeyError(f"task {self.name} has no stage {name!r}")  # a wiring bug, not a user error

    def metrics(self, art: Artifact) -> StageMetrics:
        """``art``'s metrics, readable by the keys its stage's def declares."""
        return StageMetrics(art, self.stage(art.stage).outputs)


def run_chain(ctx: BuildContext, task: Task) -> dict[str, Artifact]:
    """Run every enabled stage of ``task``'s chain in order (each reused when finished); the artifacts by name."""
    arts: dict[str, Artifact] = {}
    for d in task.chain:
        if not d.enabled(ctx.recipe):
            continue
        parents = resolve_parents(d.parent_names(ctx), arts)
        arts[d.name] = ctx.stage(d.name, d.config(ctx, arts), parents, d.run, all_ranks=d.all_ranks(ctx.recipe))
    return arts

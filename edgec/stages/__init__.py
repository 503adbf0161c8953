"""The stages of `edgec build`, each a function ``(ctx, work) -> None`` from parent artifacts to a new one.

``run_all`` wires them in order and decides each stage's cache config: what, if changed, must
re-run the stage. Parents are reached by name with :func:`parent`.
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING

from edgec.artifacts import Artifact, StageWork

if TYPE_CHECKING:
    from edgec.pipeline import BuildContext


def parent(work: StageWork, stage: str) -> Artifact:
    """The parent artifact of ``work`` produced by ``stage``."""
    for art in work.parents:
        if art.stage == stage:
            return art
    raise KeyError(f"stage {work.stage} has no parent '{stage}'")  # a wiring bug, not a user error


def _cpu_int8(q) -> dict:
    """PTQ with ``quantize.cpu_flavour: auto``: the CPU file follows this CPU's INT8 instructions, so they key the stage."""
    if q.method != "ptq" or q.cpu_flavour != "auto":
        return {}
    from edgec.compress.int8_cpu import int8_isa

    return {"cpu_int8": int8_isa()}


def run_all(ctx: BuildContext) -> dict[str, Artifact]:
    """Run every stage of ``ctx.recipe`` in order; return the artifacts by stage name."""
    from edgec import engine
    from edgec.stages import check, compress, convert, train

    r = ctx.recipe
    if r.data.name == "sst2":  # text data: its own chain of stages (edgec.stages.text), same artifacts and report
        from edgec.stages.text import run_text

        return run_text(ctx)
    # Fail in a second, before any training, when this machine cannot run the recipe's backend.
    backend = engine.resolve_backend(r.engine.backend)
    on = train.device_config(ctx)  # train.device resolved now (no GPU for `cuda` fails here); {} on the CPU
    ds = ctx.dataset
    arts: dict[str, Artifact] = {}
    arts["teacher"] = ctx.stage("teacher", {
        "data": r.section("data"), "data_fingerprint": ds.fingerprint, "seed": r.seed,
        "teacher": r.section("teacher"), "weights_sha256": train.weights_digest(r.teacher.weights), **on,
    }, [], train.teacher)
    arts["distill"] = ctx.stage("distill", {
        "student": r.section("student"), "distill": r.section("distill"), "seed": r.seed, **on,
    }, [arts["teacher"]], train.distill)
    student = arts["distill"]
    if r.prune.enabled:
        student = arts["prune"] = ctx.stage("prune", {"prune": r.section("prune"), "distill_params": r.distill.params,
                                                      "seed": r.seed, **on}, [student, arts["teacher"]], compress.prune)
    arts["export"] = ctx.stage("export", {"export": r.section("export")}, [student], convert.export)
    if r.quantize.enabled:
        # Quantized training reads the FP32 student (and the teacher for KD); PTQ reads the ONNX.
        arts["quantize"] = ctx.stage("quantize", {"quantize": r.section("quantize"), "export": r.section("export"),
                                                  "distill_params": r.distill.params, "seed": r.seed,
                                                  **(on if r.quantize.method != "ptq" else {}),
                                                  **_cpu_int8(r.quantize)},
                                     [arts["export"], student, arts["teacher"]], convert.quantize)
    deployed = arts.get("quantize", arts["export"])
    engine_parents = [deployed, student] if backend == "kernels" else [deployed]  # kernels convert the student
    arts["engine"] = ctx.stage("engine", engine.stage_config(r.engine, backend, deployed), engine_parents,
                               convert.engine)
    models = [arts[s] for s in ("teacher", "distill", "prune", "export", "quantize") if s in arts]
    arts["verify"] = ctx.stage("verify", {"verify": r.section("verify")}, [*models, arts["engine"]], check.verify)
    if r.bench.enabled:
        # Latency belongs to a machine: benchmark again on another one.
        machine = {"node": platform.node(), "cpu": platform.processor() or platform.machine()}
        from edgec.bench.results import SCHEMA

        arts["bench"] = ctx.stage("bench", {"bench": r.section("bench"), "machine": machine, "results_schema": SCHEMA},
                                  [*models, arts["engine"]], check.bench)
    return arts

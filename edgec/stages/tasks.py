"""The stage table of `edgec build`, as data: the image task's chain and the text task's chain.

Each :class:`~edgec.stages.defs.StageDef` names its function, parents, cache config (what, if changed,
must re-run the stage), when it is enabled, whether it trains on every rank and its outputs. Adding a
stage is one function plus one entry here; the loop that runs them is :func:`edgec.stages.defs.run_chain`.
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec import backends as engines
from edgec.artifacts import Artifact
from edgec.bench.results import SCHEMA
from edgec.compress.int8_cpu import int8_isa
from edgec.data import load_dataset
from edgec.stages import check, compress, convert, inputs, onnx_student, text, train
from edgec.stages.defs import ModelEntry, Outputs, StageDef, Task
from edgec.text.data import load_sst2

if TYPE_CHECKING:
    from edgec.build_context import BuildContext
    from edgec.recipe import Recipe

Arts = dict[str, Artifact]

# --- cache configs shared by both tasks ---------------------------------------------------------------


def _export_config(ctx: BuildContext, arts: Arts) -> dict[str, Any]:
    return {"export": ctx.recipe.section("export")}


def _engine_config(ctx: BuildContext, arts: Arts) -> dict[str, Any]:
    assert ctx.backend is not None  # resolved by run_all before any stage
    return engines.stage_config(ctx.recipe.engine, ctx.backend, arts.get("quantize", arts["export"]))


def _bench_config(ctx: BuildContext, arts: Arts) -> dict[str, Any]:
    # Latency belongs to a machine: benchmark again on another one.
    machine = {"node": platform.node(), "cpu": platform.processor() or platform.machine()}
    return {"bench": ctx.recipe.section("bench"), "machine": machine, "results_schema": SCHEMA}


def _quantize_trains(r: Recipe) -> bool:
    return r.quantize.method != "ptq"


def _training(r: Recipe) -> bool:
    return True


# Outputs shared by both tasks. An engine's own metrics beyond these belong to its backend (report_keys).
ENGINE_OUT = Outputs(files=("engine.json",), metrics=("backend", "model", "model_sha256"))
VERIFY_OUT = Outputs(files=("verify.json",), metrics=("models",),
                     optional=("int8_top1_agreement", "int8_accuracy_drop", "lowbit_accuracy_drop", "avx2_saturation",
                               "engine"))
BENCH_OUT = Outputs(files=("bench.json",), metrics=("models",))
SIZE_METRICS = ("params", "flops", "val_accuracy")  # every model-training stage: what the report's size columns read
SIZE_OPTIONAL = ("params_detail", "flops_at", "training", "device", "model", "modality")
# quantize: ``file`` is the deployable ONNX; PTQ and QAT add one INT8 file per runtime (``files``,
# ``tensorrt_file``), low-bit methods their packed codes (``onnx``, ``packed``, ``metadata``, ``bits``)
QUANTIZE_OUT = Outputs(metrics=("kind", "file"), model_metric="file",
                       optional=("files", "tensorrt_file", "method", "bits", "onnx", "packed", "metadata",
                                 "cpu_flavour", "float_layers", "qdq", "ops"))

# --- images ---------------------------------------------------------------------------------------------


def _cpu_int8(q) -> dict:
    """PTQ with ``quantize.cpu_flavour: auto``: the CPU file follows this CPU's INT8 instructions, so they key the stage."""
    if q.method != "ptq" or q.cpu_flavour != "auto":
        return {}

    return {"cpu_int8": int8_isa()}


def _engine_parents(ctx: BuildContext) -> tuple[str, ...]:
    # a backend that builds from the FP32 student (the kernels) gets it as a parent too
    return ("quantize|export", "prune|distill") if engines.get_backend(ctx.backend).needs_student else ("quantize|export",)


# The engine stage is the same for every task: the backend builds from the deployable model.
ENGINE = StageDef("engine", convert.engine, parents=_engine_parents, config=_engine_config, outputs=ENGINE_OUT)


def _image_quantize_config(ctx: BuildContext, arts: Arts) -> dict[str, Any]:
    # Quantized training reads the FP32 student (and the teacher for KD); PTQ reads the ONNX.
    r = ctx.recipe
    return {"quantize": r.section("quantize"), "export": r.section("export"), "distill_params": r.distill.params,
            "seed": r.seed, **(ctx.train_key if r.quantize.method != "ptq" else {}), **_cpu_int8(r.quantize)}


IMAGE_MODELS = ("teacher", "distill", "prune?", "export", "quantize?")

IMAGE_CHAIN = (
    StageDef("teacher", train.teacher, parents=(), all_ranks=_training,
             config=lambda ctx, arts: {"data": ctx.recipe.section("data"), "data_fingerprint": ctx.dataset.fingerprint,
                                       "seed": ctx.recipe.seed, "teacher": ctx.recipe.section("teacher"),
                                       **train.model_key(ctx.recipe.teacher, "teacher"),
                                       **ctx.train_key},
             outputs=Outputs(files=(train.TEACHER,), metrics=SIZE_METRICS, optional=SIZE_OPTIONAL,
                             model=train.TEACHER)),
    StageDef("distill", train.distill, parents=("teacher",), all_ranks=_training,
             config=lambda ctx, arts: {"student": ctx.recipe.section("student"), "distill": ctx.recipe.section("distill"),
                                       "seed": ctx.recipe.seed, **ctx.train_key,
                                       **train.model_key(ctx.recipe.student, "student")},
             outputs=Outputs(files=(train.STUDENT,), metrics=SIZE_METRICS, optional=SIZE_OPTIONAL,
                             model=train.STUDENT)),
    StageDef("prune", compress.prune, parents=("distill", "teacher"), all_ranks=_training,
             enabled=lambda r: r.prune.enabled,
             config=lambda ctx, arts: {"prune": ctx.recipe.section("prune"), "distill_params": ctx.recipe.distill.params,
                                       "seed": ctx.recipe.seed, **ctx.train_key},
             outputs=Outputs(files=(train.STUDENT,), metrics=(*SIZE_METRICS, "prune"),
                             optional=SIZE_OPTIONAL, model=train.STUDENT)),
    StageDef("export", convert.export, parents=("prune|distill",), config=_export_config,
             outputs=Outputs(files=(convert.ONNX,), metrics=("parity", "io"), optional=("deploy_files",),
                             model=convert.ONNX)),
    StageDef("quantize", convert.quantize, parents=("export", "prune|distill", "teacher"),
             enabled=lambda r: r.quantize.enabled, all_ranks=_quantize_trains, config=_image_quantize_config,
             outputs=QUANTIZE_OUT),
    ENGINE,
    StageDef("verify", check.verify, parents=(*IMAGE_MODELS, "engine"), outputs=VERIFY_OUT,
             config=lambda ctx, arts: {"verify": ctx.recipe.section("verify")}),
    StageDef("bench", check.bench, parents=(*IMAGE_MODELS, "engine"), enabled=lambda r: r.bench.enabled,
             config=_bench_config, outputs=BENCH_OUT),
)


def _load_images(r: Recipe):
    d = r.data
    return load_dataset(d.name, d.path, val_fraction=d.val_fraction, test_fraction=d.test_fraction, seed=r.seed,
                        limit=d.limit, synthetic=d.synthetic, imagefolder=d.imagefolder())


# The models a build reports: ``student`` is the final FP32 student (pruned when pruning ran); the quantized
# one is ``student_int8`` (PTQ or QAT, QDQ ONNX) or ``student_lowbit`` (BinaryConnect / SR), run by ONNX
# Runtime; an engine's own model (TensorRT plan, the kernels) is added by check.model_files.
IMAGES = Task(
    name="images", load_dataset=_load_images, chain=IMAGE_CHAIN, inputs=inputs.ImageInputs,
    sample=lambda ds: ds.test.x[:1],
    resolve_backend=engines.resolve_backend,
    models=(ModelEntry("teacher", ("teacher",), "torch", ("teacher",)),
            ModelEntry("student", ("prune", "distill"), "torch", ("prune", "distill")),
            ModelEntry("student_fp32_onnx", ("export",), "onnxruntime", ("prune", "distill")),
            ModelEntry("student_{kind}", ("quantize",), "onnxruntime", ("prune", "distill"))),
    verify_hint="try quantize.calibration.method: entropy or percentile, more calibration "
                "samples, or relax the verify tolerances if this is acceptable")

# --- images with an ONNX teacher and/or student trained elsewhere (edgec.stages.onnx_student) --------------
# An ONNX teacher is imported, not trained (KD reads its logits from ONNX Runtime); an ONNX student is
# imported by distill and prepared by export, and there is no prune. Both run in ONNX Runtime.


def _import_stage(name: str, fn, role: str, file: str) -> StageDef:
    """A stage that imports the recipe's ONNX ``role`` model as ``file`` (keyed by the file's bytes)."""
    return StageDef(name, fn, parents=(),
                    config=lambda ctx, arts: {"data_fingerprint": ctx.dataset.fingerprint,
                                              **onnx_student.model_key(ctx.recipe, role)},
                    outputs=Outputs(files=(file,), metrics=SIZE_METRICS, optional=SIZE_OPTIONAL, model=file))


def _onnx_task(onnx_teacher: bool, onnx_student_: bool) -> Task:
    swap: dict[str, StageDef] = {}
    if onnx_teacher:
        swap["teacher"] = _import_stage("teacher", onnx_student.import_teacher, "teacher", onnx_student.TEACHER_ONNX)
    if onnx_student_:
        swap["distill"] = _import_stage("distill", onnx_student.import_student, "student", onnx_student.STUDENT_ONNX)
        swap["export"] = StageDef("export", onnx_student.prepare_student, parents=("distill",), config=_export_config,
                                  outputs=Outputs(files=(convert.ONNX,), metrics=("parity", "io"),
                                                  optional=("deploy_files",), model=convert.ONNX))
    # imports run first: a file that does not fit the data fails before anything trains
    first = tuple(swap[n] for n in ("distill", "teacher") if n in swap)
    rest = tuple(swap.get(d.name, d) for d in IMAGE_CHAIN
                 if d.name not in {x.name for x in first} and not (onnx_student_ and d.name == "prune"))
    runtime = {True: "onnxruntime", False: "torch"}
    return Task(
        name="images-onnx-" + "-".join(r for r, on in (("teacher", onnx_teacher), ("student", onnx_student_)) if on),
        load_dataset=_load_images, chain=(*first, *rest), inputs=inputs.ImageInputs, sample=IMAGES.sample,
        resolve_backend=engines.resolve_backend,
        models=(ModelEntry("teacher", ("teacher",), runtime[onnx_teacher], ("teacher",)),
                ModelEntry("student", ("prune", "distill"), runtime[onnx_student_], ("prune", "distill")),
                *IMAGES.models[2:]),
        verify_hint=IMAGES.verify_hint)


ONNX_TASKS = {(t, st): _onnx_task(t, st) for t, st in ((True, False), (False, True), (True, True))}

# --- text (SST-2, Tang et al.'s BERT -> BiLSTM distillation; see edgec.stages.text) ---------------------

TEXT_MODELS = ("teacher", "distill", "export", "quantize?")


def _text_teacher_config(ctx: BuildContext, arts: Arts) -> dict[str, Any]:
    r, t = ctx.recipe, ctx.recipe.text
    return {"data": r.section("data"), "data_fingerprint": ctx.dataset.fingerprint, "seed": r.seed,
            "teacher": t.teacher.model_dump(mode="json", exclude={"label_batch_size"}),
            "teacher_files": text.folder_digest(text.teacher_folder(t.teacher.path)), **ctx.train_key}


TEXT_CHAIN = (
    StageDef("teacher", text.teacher, parents=(), all_ranks=_training, config=_text_teacher_config,
             outputs=Outputs(files=(text.TEACHER_WEIGHTS, "config.json"), metrics=SIZE_METRICS,
                             optional=SIZE_OPTIONAL, model=text.TEACHER_WEIGHTS)),
    StageDef("transfer", text.transfer, parents=("teacher",), enabled=lambda r: r.distill.enabled,
             config=lambda ctx, arts: {"augment": ctx.recipe.text.augment.model_dump(mode="json"),
                                       "seed": ctx.recipe.seed, "max_length": ctx.recipe.text.teacher.max_length,
                                       **ctx.train_key},
             outputs=Outputs(files=(text.TRANSFER, text.LOGITS), metrics=("originals", "augmented"))),
    StageDef("distill", text.distill, parents=("teacher", "transfer?"), all_ranks=_training,
             config=lambda ctx, arts: {"student": ctx.recipe.text.student.model_dump(mode="json"),
                                       "distill": ctx.recipe.section("distill"), "seed": ctx.recipe.seed,
                                       **ctx.train_key},
             outputs=Outputs(files=(text.STUDENT, text.VOCAB), metrics=SIZE_METRICS, optional=SIZE_OPTIONAL,
                             model=text.STUDENT)),
    StageDef("export", text.export, parents=("distill",), config=_export_config,
             outputs=Outputs(files=(convert.ONNX, text.VOCAB), metrics=("parity", "io", "deploy_files"),
                             model=convert.ONNX)),
    StageDef("quantize", text.quantize, parents=("export",), enabled=lambda r: r.quantize.enabled,
             all_ranks=_quantize_trains, config=lambda ctx, arts: {"quantize": ctx.recipe.section("quantize")},
             outputs=QUANTIZE_OUT),
    ENGINE,
    StageDef("verify", check.verify, parents=(*TEXT_MODELS, "engine"), outputs=VERIFY_OUT,
             config=lambda ctx, arts: {"verify": ctx.recipe.section("verify"),
                                       "test_limit": ctx.recipe.text.test_limit}),
    StageDef("bench", check.bench, parents=(*TEXT_MODELS, "engine"), enabled=lambda r: r.bench.enabled,
             config=_bench_config, outputs=BENCH_OUT),
)


def _load_text(r: Recipe):
    d = r.data
    return load_sst2(d.path, val_fraction=d.val_fraction, seed=r.seed, limit=d.limit, test_limit=r.text.test_limit)


TEXT = Task(
    name="text", load_dataset=_load_text, chain=TEXT_CHAIN, inputs=text.TextInputs,
    sample=lambda ds: np.array([[3, 4, 5]], dtype=np.int64),  # three ordinary word ids
    resolve_backend=text.text_backend,
    models=(ModelEntry("teacher", ("teacher",), "torch", ("teacher",)),
            ModelEntry("student", ("distill",), "torch", ("distill",)),
            ModelEntry("student_fp32_onnx", ("export",), "onnxruntime", ("distill",)),
            ModelEntry("student_{kind}", ("quantize",), "onnxruntime", ("distill",))),
    verify_hint="train the student longer or relax the verify tolerances if this is acceptable")

TASKS = {"images": IMAGES, "text": TEXT, **{t.name: t for t in ONNX_TASKS.values()}}


def task_for(recipe: Recipe) -> Task:
    """The task of a recipe: text for ``data.name: sst2`` (token ids, not images), images with an ONNX
    teacher and/or student for ``model: onnx:PATH`` (RecipeError where that cannot work), else images."""
    onnx = (onnx_student.is_onnx_model(recipe.teacher.model), onnx_student.is_onnx_model(recipe.student.model))
    if any(onnx):
        onnx_student.check_onnx_recipe(recipe)
        return ONNX_TASKS[onnx]
    return TEXT if recipe.data.name == "sst2" else IMAGES

"""The recipe: a typed, versioned description of one `edgec build`.

A recipe is YAML (read with ``yaml.safe_load`` only: no tags, no code) validated against the
pydantic models below. Every section has defaults, so a recipe states only what differs. Unknown or
mistyped fields are errors, reported with the field's path, what was expected and the closest
valid name::

    recipe.yaml: distill.temprature: unknown field (did you mean 'temperature'?)

Built-in recipes ship in ``edgec/recipes/*.yaml`` and are chosen by name (``edgec build digits``).

Example:
    >>> recipe = load_recipe("digits")                    # built-in, by name
    >>> recipe = load_recipe("my.yaml", data_path="data/mnist")
    >>> recipe.student.model
    'fitnet'
"""

from __future__ import annotations

import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_serializer, model_validator

from edgec.backends import get_backend
from edgec.configs import (QUANTIZE_CLASSES, AugmentConfig, CalibrationConfig, Config, EngineConfig, PruneConfig, PtqConfig,
                           QuantizeConfig, TextTeacherConfig, TrainConfig, train_defaults)
from edgec.errors import RecipeError
from edgec import model_names
from edgec.registry import closest, did_you_mean

SCHEMA_VERSION = 1


Section = Config  # every section: unknown fields are errors; built in Python, a bad value is a RecipeError


# The method sections are the library's config classes (edgec.configs), under their recipe names.
TrainSpec = TrainConfig
PruneSpec = PruneConfig
CalibrationSpec = CalibrationConfig
QuantizeSpec = QuantizeConfig
AugmentSpec = AugmentConfig
EngineSpec = EngineConfig
TextTeacherSpec = TextTeacherConfig


class TrainingSpec(Section):
    """Where every training stage of the build runs (teacher, distillation, pruning, quantized training).

    ``device``: ``auto`` (the GPU when torch sees one, else the CPU), ``cpu``, ``cuda`` (the current
    GPU; an error without one) or ``cuda:N``. Under torchrun each rank trains on its ``LOCAL_RANK``
    GPU with NCCL (``auto``/``cuda``) or on CPUs with gloo (``auto``/``cpu``). On a GPU the numbers
    differ slightly from the CPU's (other kernels), so the GPU's name is part of the training stages'
    cache keys; CPU builds keep theirs. Optimiser settings stay per stage (``teacher.train`` ...).
    """

    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        want = v.strip().lower()
        if want in ("auto", "cpu", "cuda") or (want.startswith("cuda:") and want[5:].isdigit()):
            return want
        hint = "did you mean 'cuda'? " if want in ("gpu", "nvidia") else did_you_mean(want, ["auto", "cpu", "cuda", "cuda:0"])
        raise ValueError(f"{hint}expected auto, cpu, cuda or cuda:N (N = the GPU's index)")


class DataSpec(Section):
    """The data. ``imagefolder`` reads your images (:mod:`edgec.data.imagefolder`): ``path`` (or ``--data``)
    holds one folder per class, or ``train/``, ``val/``, ``test/`` folders of class folders;
    ``image_size`` (224 or [H, W]; default: the images' own, which must then all be the same),
    ``resize`` (shorter side before the centre crop; default the crop's shorter side) and ``channels``
    (1 grayscale, 3 RGB; default inferred) say how a file becomes a model input (``deploy.json``)."""

    name: Literal["digits", "mnist", "cifar10", "synthetic", "imagefolder", "sst2"] = "digits"  # sst2: text
    path: str | None = None
    val_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    limit: int | None = Field(None, ge=10)
    synthetic: dict[str, Any] | None = None
    image_size: int | tuple[int, int] | None = None
    resize: int | None = Field(None, ge=1)
    channels: Literal[1, 3] | None = None

    @field_validator("image_size")
    @classmethod
    def _image_size(cls, v: int | tuple[int, int] | None) -> int | tuple[int, int] | None:
        if v is not None and min((v,) if isinstance(v, int) else v) < 1:
            raise ValueError("image_size must be positive: 224, or [height, width]")
        return v

    @model_validator(mode="after")
    def _imagefolder_only(self) -> DataSpec:
        given = [k for k in ("image_size", "resize", "channels") if getattr(self, k) is not None]
        if given and self.name != "imagefolder":
            raise ValueError(f"{', '.join(given)}: only for data.name: imagefolder (your own images)")
        if self.resize is not None and self.image_size is None:
            raise ValueError("resize needs image_size (the centre crop after the resize)")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # The image folder options are left out when unset, so other recipes' stage keys do not change.
        out = handler(self)
        return {k: v for k, v in out.items() if v is not None or k not in ("image_size", "resize", "channels")}

    def imagefolder(self) -> dict[str, Any] | None:
        """The image folder options for :func:`edgec.data.load_dataset` (None for other data)."""
        if self.name != "imagefolder":
            return None
        return {k: getattr(self, k) for k in ("image_size", "resize", "channels")}


class ModelSection(Section):
    """A model: a built-in family, ``torchvision:NAME``, ``timm:NAME`` or ``python:package.module:function``
    (runs your code; see :mod:`edgec.models.sources`), its constructor ``params``, and where its first
    weights come from: ``pretrained: true`` (the library's own, torchvision/timm) or ``weights: FILE``."""

    model: str
    params: dict[str, Any] = Field(default_factory=dict)
    pretrained: bool = False

    @field_validator("model")
    @classmethod
    def _model_name(cls, v: str) -> str:
        if isinstance(v, str) and v.startswith("onnx:") and v[5:].strip():  # edgec.stages.onnx_student
            return v
        return model_names.check_name(v)

    @model_validator(mode="after")
    def _weights_source(self) -> ModelSection:
        if self.pretrained and getattr(self, "weights", None):
            raise ValueError("give either pretrained: true or weights: FILE, not both")
        if self.pretrained and model_names.kind(self.model) not in ("torchvision", "timm"):
            raise ValueError(f"pretrained: true is for torchvision: and timm: models, not {self.model!r}: "
                             "give a weights file instead")
        return self


class TeacherSpec(ModelSection):
    model: str = "teacher_cnn"
    weights: str | None = None  # .safetensors / .pt state dict of a trained teacher; skips training when given
    train: TrainConfig = train_defaults(epochs=15)


class StudentSpec(ModelSection):
    model: str = "fitnet"
    weights: str | None = None  # .safetensors / .pt state dict to start from (the student is still trained)


class DistillSpec(Section):
    enabled: bool = True
    method: str = "kd"
    params: dict[str, Any] = Field(default_factory=dict)  # each method's own defaults (kd: T=4, alpha=0.9)
    train: TrainConfig = train_defaults(epochs=20)


class ExportSpec(Section):
    opset: int = Field(18, ge=13)
    exporter: Literal["dynamo", "torchscript"] = "dynamo"
    dynamic_batch: bool = True
    parity_atol: float = Field(1e-4, gt=0)
    parity_rtol: float = Field(1e-3, ge=0)


class VerifySpec(Section):
    max_int8_accuracy_drop: float = Field(0.01, ge=0, le=1)
    min_int8_top1_agreement: float = Field(0.97, ge=0, le=1)
    # An engine (TensorRT, kernels) against the model it was built from, on the test split:
    # every logit within engine_atol + engine_rtol * |reference| (Polygraphy's rule), top-1
    # agreement and accuracy drop bounded.
    engine_atol: float = Field(0.5, ge=0)
    engine_rtol: float = Field(0.1, ge=0)
    min_engine_top1_agreement: float = Field(0.98, ge=0, le=1)
    max_engine_accuracy_drop: float = Field(0.01, ge=0, le=1)


class BenchSpec(Section):
    enabled: bool = True
    batch_size: int = Field(64, ge=1)  # throughput batch; latency is always measured at batch 1
    warmup_runs: int = Field(20, ge=0)
    warmup_s: float = Field(0.2, ge=0)
    min_runs: int = Field(200, ge=1)
    min_duration_s: float = Field(1.0, ge=0)
    threads: int | None = Field(None, ge=1)


class TextStudentSpec(Section):
    """The BiLSTM student and its vocabulary (:mod:`edgec.text.student`)."""

    vocab_size: int = Field(8000, ge=1)
    min_freq: int = Field(1, ge=1)
    embed_dim: int = Field(64, ge=1)
    hidden: int = Field(150, ge=1)
    mlp_hidden: int = Field(200, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    embed_init: Literal["teacher", "random"] = "teacher"


class TextSpec(Section):
    """Text recipes only (``data.name: sst2``); the student's optimiser is ``distill.train``."""

    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    teacher: TextTeacherSpec = Field(default_factory=TextTeacherSpec)
    student: TextStudentSpec = Field(default_factory=TextStudentSpec)
    test_limit: int | None = Field(None, ge=1)  # evaluate on the first N test sentences (quick runs)


class Recipe(Section):
    edgec: int = Field(..., description="recipe schema version")
    name: str = "recipe"
    description: str = ""
    seed: int = 0
    train: TrainingSpec = Field(default_factory=TrainingSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    teacher: TeacherSpec = Field(default_factory=TeacherSpec)
    student: StudentSpec = Field(default_factory=StudentSpec)
    distill: DistillSpec = Field(default_factory=DistillSpec)
    prune: PruneConfig = Field(default_factory=PruneConfig)
    quantize: QuantizeConfig = Field(default_factory=PtqConfig)
    export: ExportSpec = Field(default_factory=ExportSpec)
    engine: EngineSpec = Field(default_factory=EngineSpec)
    verify: VerifySpec = Field(default_factory=VerifySpec)
    bench: BenchSpec = Field(default_factory=BenchSpec)
    text: TextSpec = Field(default_factory=TextSpec)

    @field_validator("edgec")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"this edgec reads recipe schema version {SCHEMA_VERSION}, the recipe says {v}")
        return v

    @model_validator(mode="after")
    def _one_seed(self) -> Recipe:
        # The train sections are TrainConfig, whose seed is the recipe's: one seed for the whole build.
        for name in ("teacher", "distill", "prune", "quantize"):
            train = getattr(getattr(self, name), "train", None)
            if train is not None and "seed" in train.model_fields_set:
                raise ValueError(f"{name}.train.seed: the seed is the recipe's top-level `seed` (remove this one)")
        return self

    @model_validator(mode="after")
    def _splits(self) -> Recipe:
        if self.data.val_fraction + self.data.test_fraction >= 0.9:
            raise ValueError("data.val_fraction + data.test_fraction leave less than 10% for training")
        return self

    @model_validator(mode="after")
    def _engine_fits_bench(self) -> Recipe:
        # What the named backend cannot run (a TensorRT engine only runs batches inside its profile).
        problem = None if self.engine.backend == "auto" else get_backend(self.engine.backend).recipe_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _text(self) -> Recipe:
        if self.data.name != "sst2":
            if "text" in self.model_fields_set:
                raise ValueError("the text section is for text data only (data.name: sst2)")
            return self
        if self.distill.method != "mse":
            raise ValueError(f"text distillation regresses the teacher's logits (Tang et al.): set distill.method: mse, "
                             f"not {self.distill.method!r}")
        unknown = set(self.distill.params) - {"ce_weight"}
        ce = self.distill.params.get("ce_weight", 0.0)
        if unknown or isinstance(ce, bool) or not isinstance(ce, (int, float)) or not 0 <= ce <= 1:
            raise ValueError("distill.params for text take only ce_weight, a number in [0, 1] "
                             f"(got {dict(self.distill.params)})")
        if self.export.exporter != "torchscript":
            raise ValueError("text students export with the TorchScript exporter (it keeps nn.LSTM as the ONNX LSTM op): "
                             "set export.exporter: torchscript")
        if self.prune.enabled or self.quantize.method != "ptq":
            raise ValueError("text recipes support neither prune nor quantized training: "
                             "set prune.enabled: false and quantize.method: ptq (dynamic INT8 in ONNX Runtime)")
        return self

    def section(self, name: str) -> dict[str, Any]:
        """One section as plain JSON data (what a stage's cache key hashes)."""
        return getattr(self, name).model_dump(mode="json")


def builtin_recipes() -> dict[str, str]:
    """Names of the recipes shipped with edgec -> their one-line description."""
    out = {}
    for entry in sorted(resources.files("edgec.recipes").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
            description = str(data.get("description") or "").strip()
            out[entry.name[:-5]] = description.splitlines()[0] if description else ""
    return out


def _union_members(annotation: Any) -> dict[str, type[BaseModel]]:
    """A tagged union's members by tag (their ``method``), e.g. the quantize section's; {} for anything else."""
    out = {}
    for arg in typing.get_args(annotation):
        cls = typing.get_args(arg)[0] if typing.get_origin(arg) is typing.Annotated else arg
        method = getattr(cls, "model_fields", {}).get("method")
        if isinstance(cls, type) and issubclass(cls, BaseModel) and method is not None:
            out[str(method.default)] = cls
    return out


def _walk(loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], type[BaseModel] | None]:
    """``loc`` without union tags (``quantize.binaryconnect.bits`` -> ``quantize.bits``, the path a user
    wrote) and the section class at its end (None when ``loc`` leaves the sections)."""
    model: type[BaseModel] | None = Recipe
    clean: list[Any] = []
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        clean.append(part)
        field = model.model_fields.get(str(part)) if model is not None else None
        ann = field.annotation if field is not None else None
        members = _union_members(ann)
        if members and parts and parts[0] in members:
            model = members[parts.pop(0)]
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            model = None
    return tuple(clean), model


def _unknown_field(loc: tuple[Any, ...]) -> str:
    """What to say about the unknown field at ``loc`` (pydantic's, with union tags): which quantize
    methods have it, or the closest valid name."""
    section = _walk(loc[:-1])[1]
    valid = list(section.model_fields) if section is not None else []
    method = getattr(section, "model_fields", {}).get("method")
    owners = [m for m, c in QUANTIZE_CLASSES.items() if str(loc[-1]) in c.model_fields]
    if section in QUANTIZE_CLASSES.values() and method is not None and owners:
        return f"a setting of quantize.method {' / '.join(owners)}, not of {method.default}"
    best = closest(loc[-1], valid)
    return f"did you mean '{best}'?" if best else f"valid fields: {', '.join(valid)}"


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc, _ = _walk(tuple(err["loc"]))
        path = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{source}: {path}: unknown field ({_unknown_field(tuple(err['loc']))})")
        elif err["type"] == "missing":
            lines.append(f"{source}: {path}: required field is missing")
        else:
            got = err.get("input")
            got_s = f" (got {got!r})" if not isinstance(got, dict) else ""
            lines.append(f"{source}: {path}: {err['msg'].removeprefix('Value error, ')}{got_s}")
    return "\n".join(lines)


def parse_recipe(data: Any, *, source: str = "recipe") -> Recipe:
    """Validate already-parsed YAML/JSON data. Raises :class:`RecipeError` listing every problem."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe must be a mapping of sections, got {type(data).__name__}",
                          hint="start from `edgec recipes --show digits`")
    if "edgec" not in data:
        raise RecipeError(f"{source}: missing the schema version line `edgec: {SCHEMA_VERSION}`",
                          hint=f"add `edgec: {SCHEMA_VERSION}` at the top of the recipe")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(_format_errors(exc, source),
                          hint="fix the fields above; `edgec recipes --show digits` prints a complete recipe") from None


def _read_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{source}: YAML syntax error{where}: {problem}",
                          hint="fix the YAML (indentation, a missing ':' or an unclosed quote are common)") from None


def recipe_text(name_or_path: str | Path) -> tuple[str, str]:
    """Return ``(yaml_text, source)`` for a built-in recipe name or a file path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists() or "/" in str(name_or_path):
        if not p.is_file():
            raise RecipeError(f"recipe file not found: {p}", hint="check the path, or run `edgec recipes` for built-in names")
        return p.read_text(encoding="utf-8"), str(p)
    builtin = builtin_recipes()
    if str(name_or_path) not in builtin:
        hint = did_you_mean(name_or_path, builtin, cutoff=0.6)
        raise RecipeError(f"unknown recipe '{name_or_path}'",
                          hint=f"{hint}built-in recipes: {', '.join(builtin)}; or pass a path to a .yaml file")
    text = resources.files("edgec.recipes").joinpath(f"{name_or_path}.yaml").read_text(encoding="utf-8")
    return text, f"builtin:{name_or_path}"


def load_recipe(name_or_path: str | Path = "digits", *, data_path: str | Path | None = None) -> Recipe:
    """Load and validate a built-in recipe (by name) or a YAML file; ``data_path`` overrides ``data.path``.

    A recipe file's folder is added to the places ``python:`` models are imported from."""
    text, source = recipe_text(name_or_path)
    recipe = parse_recipe(_read_yaml(text, source), source=source)
    if not source.startswith("builtin:"):  # `python:` models may live next to the recipe file
        model_names.add_search_dir(Path(source).parent)
    if data_path is not None:
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"path": str(data_path)})})
    return recipe

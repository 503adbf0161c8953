"""Quantized training end to end: prepare a float model, train it with ``edgec.train.fit``, finalize it.

Methods (a recipe's ``quantize.method``):

======================  =============================================================  ==========================
method                  training                                                       deployable artifact
======================  =============================================================  ==========================
``qat``                 INT8 fake quantization, STE (:mod:`edgec.compress.fakequant`)  QDQ ONNX, learned scales
``binaryconnect``       Li et al. BC: FP buffer ``W_r``, forward/grad at ``Q(W_r)``,    FP32 ONNX (weights =
                        clip (:mod:`edgec.compress.lowbit`)                            scale * code) + packed
``stochastic_rounding`` Li et al. SR: ``W <- Q_s(W - lr * g)``, no FP copy             codes (.safetensors)
``ptq``                 none: calibration (:func:`edgec.compress.quantize.quantize_qdq`) QDQ ONNX
======================  =============================================================  ==========================

``bits``: ``qat``/``ptq`` are INT8 (8); BC/SR take 1 (binary), 2 (ternary, TWN), 3..8 (uniform), or
``scheme="uniform"`` for a 2-bit uniform grid. Which layers are quantized: every Conv2d/Linear in
registration order (= execution order for edgec's models); ``quantize_first``/``quantize_last``
decide the first and last of them. Defaults: INT8 quantizes all (TensorRT wants every weighted
layer INT8); BC/SR keep the first and last in full precision, the common practice in the
binary-weight literature (e.g. XNOR-Net, DoReFa-Net): they hold a tiny share of the weights and are
the most sensitive to quantization. Set both to True to quantize every layer.

Example:
    >>> result = train_quantized(student, (x, y), (xv, yv), TrainConfig(epochs=5, lr=1e-3),
    ...                          method="binaryconnect", bits=1)
    >>> deployed = finalize(result.model)        # plain Conv2d/Linear, weights = scale * code
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgec.compress.bnfold import fold_batchnorm, set_module
from edgec.compress.fakequant import ACT_OBSERVERS, FAKEQUANT_LAYERS, FakeQuantConv2d, FakeQuantLinear
from edgec.compress.lowbit import LOWBIT_LAYERS, LowBitConv2d, LowBitLinear, finalize_lowbit
from edgec.compress.quantizers import make_quantizer
from edgec.errors import ModelError, RecipeError
from edgec.registry import Registry
from edgec.train import LossFn, TrainConfig, TrainResult, fit

METHODS = ("ptq", "qat", "binaryconnect", "stochastic_rounding")
TRAINED_METHODS = ("qat", "binaryconnect", "stochastic_rounding")
_NAMES: Registry[str] = Registry("quantization method", field="quantize.method", normalize=lambda n: n.strip().lower(),
                                 aliases={"bc": "binaryconnect", "sr": "stochastic_rounding", "int8": "qat"})
for _name in METHODS:
    _NAMES.register(_name, _name)
CALIBRATION_SAMPLES = 512  # batches' worth of data that initialise the activation scales


def check_method(method: str) -> str:
    """The canonical method name (``bc``/``sr`` accepted); RecipeError for anything else.

    Example:
        >>> check_method("sr")
        'stochastic_rounding'
    """
    return _NAMES.canonical(method)


def check_bits(method: str, bits: int | None, scheme: str | None = None) -> int:
    """Validate ``bits`` for ``method`` (None means 8 for INT8 methods); returns the bit width.

    Example:
        >>> check_bits("binaryconnect", 1)
        1
    """
    method = check_method(method)
    if method in ("qat", "ptq"):
        if bits not in (None, 8) or scheme not in (None, "uniform"):
            raise RecipeError(f"quantize.method {method} produces INT8 (bits: 8), got bits={bits!r}",
                              hint="use bits: 8, or method binaryconnect / stochastic_rounding for 1-7 bits")
        return 8
    if bits is None:
        raise RecipeError(f"quantize.method {method} needs quantize.bits",
                          hint="set bits to 1 (binary), 2 (ternary), 3..7 (uniform) or 8")
    return make_quantizer(bits, scheme).bits  # raises RecipeError for bits 0, 9, "4", ...


def weighted_layers(model: nn.Module) -> list[str]:
    """Names of the plain Conv2d/Linear layers that :func:`prepare_qat` can quantize, in order."""
    return [n for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]


def prepare_qat(model: nn.Module, method: str, bits: int | None = None, *, scheme: str | None = None,
                quantize_first: bool | None = None, quantize_last: bool | None = None,
                act_observer: str = "ema", stochastic_forward: bool = False) -> nn.Module:
    """A copy of ``model`` with its Conv2d/Linear layers replaced by quantized-training layers.

    ``qat``: BatchNorms are folded into their convs first (so the learned weight scales are the
    deployed ones), then INT8 fake-quant layers (``act_observer``: ``"ema"`` or ``"lsq"``).
    ``binaryconnect``/``stochastic_rounding``: low-bit layers on a fixed per-channel grid
    (``stochastic_forward``: BC quantizes with ``Q_s`` instead of ``Q_d`` in training forwards).
    SR rounds the initial weights onto the grid stochastically (torch's global generator).

    Example:
        >>> m = prepare_qat(student, "stochastic_rounding", bits=2)   # ternary SR
    """
    method = check_method(method)
    if method not in TRAINED_METHODS:
        raise RecipeError(f"quantize.method {method} does not train",
                          hint="use edgec.compress.quantize.quantize_qdq (or quantize_for_deployment)")
    bits = check_bits(method, bits, scheme)
    if act_observer not in ACT_OBSERVERS:
        raise RecipeError(f"unknown activation observer {act_observer!r}",
                          hint=f"use one of: {', '.join(ACT_OBSERVERS)}")
    if any(isinstance(m, FAKEQUANT_LAYERS + LOWBIT_LAYERS) for m in model.modules()):
        raise ModelError("the model is already prepared for quantized training",
                         hint="pass the float model to prepare_qat")
    int8 = method == "qat"
    target = fold_batchnorm(model) if int8 else copy.deepcopy(model)
    names = weighted_layers(target)
    if not names:
        raise ModelError(f"{type(model).__name__} has no Conv2d or Linear layer to quantize",
                         hint="quantized training works on Conv2d/Linear models")
    first = int8 if quantize_first is None else quantize_first
    last = int8 if quantize_last is None else quantize_last
    chosen = [n for i, n in enumerate(names)
              if (i != 0 or first) and (i != len(names) - 1 or last)]
    quantizer = None if int8 else make_quantizer(bits, scheme)
    for name in chosen:
        layer = target.get_submodule(name)
        if int8:
            cls = FakeQuantConv2d if isinstance(layer, nn.Conv2d) else FakeQuantLinear
            new: nn.Module = cls.from_float(layer, act_observer=act_observer)  # type: ignore[arg-type]
        else:
            cls2 = LowBitConv2d if isinstance(layer, nn.Conv2d) else LowBitLinear
            new = cls2.from_float(layer, quantizer, method, stochastic_forward)  # type: ignore[arg-type]
        set_module(target, name, new)
    return target.train(model.training)


def quantized_layers(model: nn.Module) -> list[str]:
    """Names of the quantized-training layers of a :func:`prepare_qat` model."""
    return [n for n, m in model.named_modules() if isinstance(m, FAKEQUANT_LAYERS + LOWBIT_LAYERS)]


def after_quantized_step(model: nn.Module) -> None:
    """``fit``'s ``after_step`` hook: BC clips ``W_r``, SR re-rounds ``W``, INT8 refreshes weight scales."""
    for m in model.modules():
        if isinstance(m, FAKEQUANT_LAYERS + LOWBIT_LAYERS):
            m.after_step()


@torch.no_grad()
def calibrate(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> None:
    """Initialise the INT8 layers' activation scales from ``x`` (N, ...) without training.

    Runs in eval mode (BatchNorm statistics untouched) with the observers switched on.

    Example:
        >>> calibrate(prepared, x_train[:512])
    """
    layers = [m for m in model.modules() if isinstance(m, FAKEQUANT_LAYERS)]
    was_training = model.training
    device = next(iter(model.parameters())).device
    model.eval()
    try:
        for m in layers:
            m.calibrating = True
        for i in range(0, len(x), batch_size):
            model(torch.as_tensor(np.asarray(x[i:i + batch_size], dtype=np.float32)).to(device))
    finally:
        for m in layers:
            m.calibrating = False
        model.train(was_training)


def train_quantized(model: nn.Module, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                    config: TrainConfig, *, method: str, bits: int | None = None, scheme: str | None = None,
                    quantize_first: bool | None = None, quantize_last: bool | None = None,
                    act_observer: str = "ema", stochastic_forward: bool = False,
                    loss_fn: LossFn | None = None, workdir: str | Path | None = None, progress: bool = True,
                    description: str | None = None) -> TrainResult:
    """Prepare ``model`` (:func:`prepare_qat`; the float model is not changed) and train it with
    :func:`edgec.train.fit`; ``result.model`` is the trained quantized-training model.

    ``fit`` runs :func:`after_quantized_step` after every optimizer step; INT8 activation scales
    are initialised from the first training samples before the first step. The returned epoch is
    fit's best by validation accuracy, measured with the quantized weights.

    Example:
        >>> r = train_quantized(student, train, val, TrainConfig(epochs=3, lr=1e-4), method="qat")
        >>> qdq_model = finalize(r.model)
    """
    method = check_method(method)
    prepared = prepare_qat(model, method, bits, scheme=scheme, quantize_first=quantize_first,
                           quantize_last=quantize_last, act_observer=act_observer,
                           stochastic_forward=stochastic_forward)
    if method == "qat":
        calibrate(prepared, np.asarray(train[0])[:CALIBRATION_SAMPLES])
    key = (f"quantized:{method}:{check_bits(method, bits, scheme)}:{scheme}:{quantize_first}:{quantize_last}:"
           f"{act_observer}:{stochastic_forward}")
    return fit(prepared, train, val, config, loss_fn=loss_fn, workdir=workdir, progress=progress,
               description=description or method, resume_key=key, after_step=after_quantized_step)


def finalize(model: nn.Module) -> nn.Module:
    """The deployable model of a quantized-training model (a copy, in eval mode).

    - INT8 QAT: the fake-quant model itself, weight scales refreshed from the final weights; its
      ONNX export is the QDQ artifact (:func:`edgec.export.lowbit.export_qat_qdq`).
    - BC/SR: :func:`edgec.compress.lowbit.finalize_lowbit` (plain layers, weights = scale * code,
      BatchNorm folded); export with :func:`edgec.export.lowbit.export_lowbit`.

    Example:
        >>> deployed = finalize(result.model)
    """
    kinds = {type(m) for m in model.modules()}
    if kinds & set(LOWBIT_LAYERS):
        return finalize_lowbit(model)
    if kinds & set(FAKEQUANT_LAYERS):
        target = copy.deepcopy(model).eval()
        for m in target.modules():
            if isinstance(m, FAKEQUANT_LAYERS):
                m.refresh_weight_scale()
        return target
    raise ModelError(f"{type(model).__name__} has no quantized-training layers",
                     hint="train it with train_quantized (or prepare it with prepare_qat) first")


__all__ = ["METHODS", "TRAINED_METHODS", "after_quantized_step", "calibrate", "check_bits", "check_method",
           "finalize", "prepare_qat", "quantized_layers", "train_quantized", "weighted_layers"]

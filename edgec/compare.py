"""The one way edgec compares a model's outputs with a reference's (parity, verification, engines).

Every check that asks "does file B compute what model A computes?" goes through :func:`compare`,
anchored on Polygraphy's comparator (``polygraphy run --atol/--rtol``): an output passes when
``|got - ref| <= atol + rtol * |ref|`` elementwise; NaN (in either) is never close. Alongside, the
max/mean absolute difference, the top-1 agreement over the last axis, the fraction of outputs
outside the tolerance and, when labels are given, both accuracies and the drop.

References computed by torch on a GPU must not use TF32: on Ampere and newer torch lets cuDNN run
FP32 convolutions in TF32 by default (``torch.backends.cudnn.allow_tf32``; matmuls too once a user
sets ``float32_matmul_precision("high")``), which moved a BinaryConnect student's logits by 2.2e-3 on
an H200 and failed parity against ONNX Runtime's FP32. :func:`torch_outputs` runs the model under
:func:`full_fp32`.

Example:
    >>> ref = torch_outputs(model, x)                     # FP32, TF32 off, on the model's device
    >>> c = compare(ref, run_onnx("model.onnx", x), atol=1e-4, rtol=1e-3, labels=y)
    >>> c.passed(), c.max_abs_diff, c.top1_agreement, c.accuracy_drop
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.errors import VerificationFailed

if TYPE_CHECKING:
    from torch import nn


@dataclass
class Comparison:
    """How closely ``got`` follows ``ref``. Fields left None were not asked for (no tolerance, no labels)
    and are left out of :meth:`to_dict`, so a plain comparison keeps its four keys."""

    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    n: int
    atol: float | None = None
    rtol: float | None = None
    outside_tolerance: float | None = None  # fraction of outputs beyond atol + rtol * |ref| (NaN counts)
    reference_accuracy: float | None = None
    accuracy: float | None = None
    accuracy_drop: float | None = None      # reference_accuracy - accuracy (fraction, not points)

    def passed(self, *, min_top1_agreement: float = 0.0, max_accuracy_drop: float | None = None) -> bool:
        """True when every output is within tolerance (if one was given), top-1 agreement is at least
        ``min_top1_agreement`` and the accuracy drop at most ``max_accuracy_drop`` (if both known)."""
        if self.outside_tolerance is not None and self.outside_tolerance > 0:
            return False
        if not self.top1_agreement >= min_top1_agreement:
            return False
        return not (max_accuracy_drop is not None and self.accuracy_drop is not None
                    and self.accuracy_drop > max_accuracy_drop)

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain JSON values (fields that were not measured are omitted)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def describe(self) -> str:
        """One line for an error message: max |diff| against the tolerance, agreement, accuracy drop."""
        tol = f" (atol {self.atol:g}, rtol {self.rtol:g}: {self.outside_tolerance:.2%} outside)" \
            if self.atol is not None and self.outside_tolerance is not None else ""
        drop = f", accuracy drop {self.accuracy_drop * 100:.2f} points" if self.accuracy_drop is not None else ""
        return (f"max |diff| {self.max_abs_diff:.3g}{tol}, mean |diff| {self.mean_abs_diff:.3g}, "
                f"top-1 agreement {self.top1_agreement:.4f} on {self.n} inputs{drop}")


def compare(ref: np.ndarray, got: np.ndarray, *, atol: float | None = None, rtol: float = 0.0,
            labels: np.ndarray | None = None) -> Comparison:
    """Compare ``got`` with the reference ``ref`` (same shape; classes on the last axis).

    With ``atol``, ``outside_tolerance`` is the fraction of elements with
    ``not |got - ref| <= atol + rtol * |ref|`` (NaN is outside). With ``labels`` (one per sample),
    both accuracies and ``accuracy_drop``. A shape mismatch raises :class:`VerificationFailed`.

    Example:
        >>> compare(np.eye(3), np.eye(3) * 2, atol=0.5).outside_tolerance
        0.3333333333333333
    """
    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(got, dtype=np.float64)
    if a.shape != b.shape:
        raise VerificationFailed(f"outputs differ in shape: {a.shape} vs {b.shape}",
                                 hint="the two models do not compute the same function; re-export")
    diff = np.abs(a - b)
    if a.ndim == 0 or a.size == 0:
        agree, n = 1.0, 1
    else:
        agree = float(np.mean(a.argmax(-1) == b.argmax(-1)))
        n = a.shape[0] if a.ndim > 1 else 1  # samples (batch), not rows of a [batch, time, classes] output
    if np.isnan(diff).any():  # NaN must never pass as "close"
        max_d = mean_d = float("nan")
    else:
        max_d, mean_d = float(diff.max(initial=0.0)), float(diff.mean()) if diff.size else 0.0
    out = Comparison(max_d, mean_d, agree, n)
    if atol is not None:
        within = diff <= atol + rtol * np.abs(a)  # False for NaN
        out.atol, out.rtol = float(atol), float(rtol)
        out.outside_tolerance = float(np.mean(~within)) if within.size else 0.0
    if labels is not None and a.ndim > 1:
        y = np.asarray(labels).reshape(-1)
        if len(y) != a.shape[0]:
            raise ValueError(f"{len(y)} labels for {a.shape[0]} outputs")
        out.reference_accuracy = float(np.mean(a.argmax(-1) == y))
        out.accuracy = float(np.mean(b.argmax(-1) == y))
        out.accuracy_drop = out.reference_accuracy - out.accuracy
    return out


@contextlib.contextmanager
def full_fp32() -> Iterator[None]:
    """Inside, torch runs FP32 matmuls and convolutions in full FP32 (no TF32); the settings are
    restored on exit. Without CUDA it changes nothing that matters (TF32 is a GPU mode).

    Example:
        >>> with full_fp32():
        ...     ref = model(x)
    """
    import torch

    saved = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    try:
        torch.set_float32_matmul_precision("highest")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cuda.matmul.allow_tf32 = saved[1]
        torch.backends.cudnn.allow_tf32 = saved[2]


def torch_outputs(model: nn.Module, x: np.ndarray, *, batch_size: int | None = None,
                  dtype: Any = None) -> np.ndarray:
    """``model``'s first output on ``x`` as float32 numpy: eval mode (restored), no gradients, TF32 off,
    on the device the model's parameters are on; in batches of ``batch_size`` (None: one batch).

    Example:
        >>> torch_outputs(model, x_val[:256]).shape
        (256, 10)
    """
    import torch

    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    arr = np.ascontiguousarray(x, dtype=dtype or np.float32)
    was_training = model.training
    model.eval()
    outs = []
    try:
        with torch.no_grad(), full_fp32():
            step = batch_size or max(len(arr), 1)
            for s in range(0, max(len(arr), 1), step):
                ref = model(torch.from_numpy(arr[s:s + step]).to(device))
                if isinstance(ref, (tuple, list)):
                    ref = ref[0]
                outs.append(ref.detach().float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(outs)


__all__ = ["Comparison", "compare", "full_fp32", "torch_outputs"]

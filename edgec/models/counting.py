"""Parameter and MAC counts, the "size" and "compute" columns of every edgec report.

``count_flops`` counts multiply-accumulates (MACs) of convolutions and fully-connected layers
at batch 1, measured with forward hooks on a dummy input, so it sees the real output sizes
(strides, padding, pooling) without any per-architecture arithmetic:

- ``Conv1d/2d/3d``: ``out_elems * (in_channels / groups) * prod(kernel_size)``
  (``out_elems`` = C_out * H_out * W_out of one sample),
- ``Linear``: ``in_features * out_features`` per output row.

BatchNorm, ReLU, pooling, additions and biases are *not* counted: BN folds into the preceding
conv at export time, and the others cost O(elements), negligible next to the MACs. A module
called twice in one forward pass is counted twice.

Example:
    >>> model = create_model("cifar_resnet", in_channels=3, num_classes=10, input_size=32)
    >>> count_params(model), count_flops(model, (3, 32, 32))
    (272474, 40813184)
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from edgec.errors import ModelError


def count_params(model: nn.Module) -> int:
    """Number of parameters, trainable or not (buffers such as BN running stats excluded).

    Shared (tied) parameters are counted once.

    Example:
        >>> count_params(nn.Linear(4, 3))     # 4*3 weights + 3 biases
        15
    """
    return sum(p.numel() for p in model.parameters())


def _conv_macs(module: nn.Module, output: torch.Tensor) -> int:
    m: nn.modules.conv._ConvNd = module  # type: ignore[assignment]
    return output[0].numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)


def _linear_macs(module: nn.Module, output: torch.Tensor) -> int:
    m: nn.Linear = module  # type: ignore[assignment]
    rows = output.numel() // m.out_features   # 1 for (1, out); T for (1, T, out)
    return rows * m.in_features * m.out_features


def count_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass at batch 1 on an input of ``input_shape`` (C, H, W).

    Runs the model once in eval mode under ``no_grad`` on zeros (so BN running stats are not
    touched) and restores its train/eval mode afterwards.

    Example:
        >>> count_flops(nn.Conv2d(3, 8, 3, padding=1), (3, 4, 4))    # 8*4*4 outputs * 3*3*3
        3456
    """
    shape = tuple(input_shape)
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise ModelError(f"input_shape must be positive integers (C, H, W), got {input_shape!r}")
    shape = tuple(int(s) for s in shape)
    total = 0

    def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.modules.conv._ConvNd):
            total += _conv_macs(module, output)
        else:
            total += _linear_macs(module, output)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    modes = {m: m.training for m in model.modules()}
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *shape), device=device, dtype=dtype))
    except RuntimeError as exc:
        raise ModelError(f"the model cannot run on an input of shape (1, {', '.join(map(str, shape))}): "
                         f"{exc}", hint="check in_channels and input_size against the data") from exc
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return total

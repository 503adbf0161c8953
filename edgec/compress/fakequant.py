"""INT8 quantization-aware training layers whose ONNX export is a TensorRT-ready QDQ graph.

Each Conv2d/Linear is replaced by a layer that fake-quantizes

- its **weight** per output channel, symmetric: ``scale_c = max|W_c| / 127`` (recomputed from the
  learned weights, so the codes span [-127, 127] and never use -128), via
  ``torch.fake_quantize_per_channel_affine(W, scale [C], zero_point [C] = 0, axis=0, -128, 127)``;
- its **input activation** per tensor, symmetric, with a scale that is either
  ``"ema"``: an exponential moving average of ``max|x| / 127`` over training batches (the
  TensorFlow/PyTorch QAT default; robust, no extra hyper-parameters), or
  ``"lsq"``: a learned parameter trained by gradient descent (Esser et al., "Learned Step Size
  Quantization", ICLR 2020: init ``2 * mean|x| / sqrt(127)``, gradient scaled by
  ``1 / sqrt(numel_per_sample * 127)``), which can learn to clip outliers;
  evaluated (and exported) with ``torch.fake_quantize_per_tensor_affine(x, scale, 0, -128, 127)``.

Both use the straight-through estimator: gradients pass unchanged inside the clipping range.
Scales and zero points live in registered buffers (LSQ's scale in a parameter), so the exporters
turn each fake-quantize into QuantizeLinear -> DequantizeLinear with these exact **learned** values
as initialisers: zero points INT8 0, per-channel weight scales on axis 0, per-tensor activation
scales, float bias. The range is (-128, 127) because that is ONNX INT8's saturation range (ORT and
torch then agree) and the only signed range the TorchScript exporter accepts.

Example:
    >>> layer = FakeQuantConv2d.from_float(conv, act_observer="ema")
    >>> y = layer(x)            # training: observes max|x|, quantizes x and W, STE gradients
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ACT_OBSERVERS = ("ema", "lsq")
QMIN, QMAX = -128, 127   # ONNX INT8 saturation range
WEIGHT_QMAX = 127        # symmetric weight codes: max|W_c| maps to 127
EMA_MOMENTUM = 0.1
MIN_SCALE = 1e-8         # keeps an all-zero channel/activation from dividing by zero


class _FakeQuantMixin:
    weight: nn.Parameter
    weight_scale: torch.Tensor       # [C] float32
    weight_zero_point: torch.Tensor  # [C] int32 zeros
    act_scale: torch.Tensor          # [] float32 (a Parameter for "lsq")
    act_zero_point: torch.Tensor     # [] int32 zero
    act_observed: torch.Tensor       # [] bool: has the activation scale been initialised?

    def _init_fakequant(self, act_observer: str, momentum: float) -> None:
        if act_observer not in ACT_OBSERVERS:
            raise ValueError(f"act_observer must be one of {ACT_OBSERVERS}, got {act_observer!r}")
        self.act_observer, self.momentum, self.calibrating = act_observer, momentum, False
        c, dev = self.weight.shape[0], self.weight.device
        reg = self.register_buffer  # type: ignore[attr-defined]
        reg("weight_scale", torch.ones(c, device=dev))
        reg("weight_zero_point", torch.zeros(c, dtype=torch.int32, device=dev))
        reg("act_zero_point", torch.zeros((), dtype=torch.int32, device=dev))
        reg("act_observed", torch.zeros((), dtype=torch.bool, device=dev))
        if act_observer == "lsq":
            self.act_scale = nn.Parameter(torch.ones((), device=dev))
        else:
            reg("act_scale", torch.ones((), device=dev))
        self.refresh_weight_scale()

    @torch.no_grad()
    def refresh_weight_scale(self) -> None:
        """``weight_scale = max|W_c| / 127`` from the current weights (run after every step)."""
        dims = tuple(range(1, self.weight.dim()))
        self.weight_scale.copy_((self.weight.detach().abs().amax(dim=dims) / WEIGHT_QMAX).clamp_min(MIN_SCALE))

    def after_step(self) -> None:
        """Keep the weight scales those of the updated weights; keep LSQ's scale positive."""
        self.refresh_weight_scale()
        if self.act_observer == "lsq":
            with torch.no_grad():
                self.act_scale.clamp_(min=MIN_SCALE)

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        if self.act_observer == "lsq":  # LSQ only needs an initial value; then it is learned
            if not bool(self.act_observed):
                init = 2 * x.abs().mean() / math.sqrt(WEIGHT_QMAX)
                self.act_scale.copy_(init.clamp_min(MIN_SCALE))
                self.act_observed.fill_(True)
            return
        now = (x.abs().amax() / WEIGHT_QMAX).clamp_min(MIN_SCALE)
        if bool(self.act_observed):
            self.act_scale.mul_(1 - self.momentum).add_(now * self.momentum)
        else:
            self.act_scale.copy_(now)
            self.act_observed.fill_(True)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize the layer's input per tensor (observing it first when training)."""
        if self.training or self.calibrating:  # type: ignore[attr-defined]
            self._observe(x)
        if self.act_observer == "lsq" and self.training and torch.is_grad_enabled():  # type: ignore[attr-defined]
            per_sample = x[0].numel() if x.dim() > 1 else x.numel()  # LSQ: g = 1/sqrt(N * Qp)
            return _lsq_fake_quantize(x, self.act_scale, 1.0 / math.sqrt(per_sample * WEIGHT_QMAX))
        return torch.fake_quantize_per_tensor_affine(x, self.act_scale, self.act_zero_point, QMIN, QMAX)

    def quantized_weight(self) -> torch.Tensor:
        """Fake-quantized weight, per output channel (axis 0), with the buffered scales."""
        if self.training:  # type: ignore[attr-defined]
            self.refresh_weight_scale()
        return torch.fake_quantize_per_channel_affine(self.weight, self.weight_scale,
                                                      self.weight_zero_point, 0, QMIN, QMAX)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", int8 fake-quant (act: {self.act_observer})"  # type: ignore[misc]


def _lsq_fake_quantize(x: torch.Tensor, scale: torch.Tensor, grad_scale: float) -> torch.Tensor:
    """LSQ forward (= fake_quantize) with its gradients: STE for x, LSQ's for the scale."""
    s = scale * grad_scale + (scale - scale * grad_scale).detach()  # value s, gradient * grad_scale
    v = torch.clamp(x / s, QMIN, QMAX)
    v = v + (torch.round(v) - v).detach()  # round with a straight-through gradient
    return v * s


class FakeQuantConv2d(_FakeQuantMixin, nn.Conv2d):
    """``nn.Conv2d`` with INT8 fake-quantized input and weight (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, Cin, H, W] -> [N, Cout, H', W']
        return self._conv_forward(self.quantize_input(x), self.quantized_weight(), self.bias)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, act_observer: str = "ema",
                   momentum: float = EMA_MOMENTUM) -> FakeQuantConv2d:
        """A fake-quantized copy of ``conv`` (same hyper-parameters, device and weights)."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,  # type: ignore[arg-type]
                  padding=conv.padding, dilation=conv.dilation, groups=conv.groups,  # type: ignore[arg-type]
                  bias=conv.bias is not None, padding_mode=conv.padding_mode,
                  device=conv.weight.device, dtype=conv.weight.dtype)
        new.load_state_dict(conv.state_dict())
        new._init_fakequant(act_observer, momentum)
        return new


class FakeQuantLinear(_FakeQuantMixin, nn.Linear):
    """``nn.Linear`` with INT8 fake-quantized input and weight (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, in] -> [N, out]
        return F.linear(self.quantize_input(x), self.quantized_weight(), self.bias)

    @classmethod
    def from_float(cls, linear: nn.Linear, act_observer: str = "ema",
                   momentum: float = EMA_MOMENTUM) -> FakeQuantLinear:
        """A fake-quantized copy of ``linear`` (same shape, device and weights)."""
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                  device=linear.weight.device, dtype=linear.weight.dtype)
        new.load_state_dict(linear.state_dict())
        new._init_fakequant(act_observer, momentum)
        return new


FAKEQUANT_LAYERS = (FakeQuantConv2d, FakeQuantLinear)

__all__ = ["ACT_OBSERVERS", "FAKEQUANT_LAYERS", "FakeQuantConv2d", "FakeQuantLinear", "QMAX", "QMIN"]

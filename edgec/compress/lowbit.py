"""Low-bit weight training (binary, ternary, k-bit): BinaryConnect and stochastic rounding layers.

Li et al., "Training Quantized Nets: A Deeper Understanding" (NeurIPS 2017, arXiv 1706.02379),
section 3, compare two ways to train weights that live on a grid ``Q`` (lr ``a_t``, minibatch
gradient ``g``):

- **BinaryConnect (BC)**: keep a full-precision buffer ``W_r``; forward and backward run at the
  quantized weights, and the buffer takes the step:
  ``W_b = Q(W_r)``,  ``W_r <- W_r - a_t * g(W_b)``  (then, as in Courbariaux et al. 2015, clip ``W_r``
  to the quantizer's range so it cannot drift where its sign/code never changes again).
- **Stochastic rounding (SR)**: no full-precision copy at all; the weights are on the grid and each
  update is rounded back onto it stochastically: ``W <- Q_s(W - a_t * g(W))``. Updates much
  smaller than the grid spacing only move a weight with small probability, which is why SR stalls
  once the learning rate is small (the paper's Theorem 2 / section 5) while BC keeps accumulating
  them in ``W_r``.

Here ``Q`` is one of :mod:`edgec.compress.quantizers` with a **fixed per-output-channel grid**:
the scale (and ternary's threshold) is set once from the layer's weights when it is wrapped and
kept in buffers, so "on the grid" and "the quantizer's range" mean the same thing at every step
(the paper's analysis also uses a fixed grid spacing). The optimizer updates ``weight`` (``W_r``
for BC, ``W`` for SR); :meth:`after_step` (run by ``fit(after_step=...)`` right after every
``optimizer.step()``) applies the clip (BC) or the rounding (SR).

Example:
    >>> layer = LowBitConv2d.from_float(conv, make_quantizer(1), rule="binaryconnect")
    >>> y = layer(x)                   # conv with alpha * sign(W_r); gradients flow to W_r (STE)
    >>> layer.after_step()             # clip W_r to [-alpha, alpha]
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgec.compress.bnfold import conv_bn_pairs, fold_factors, set_module
from edgec.compress.quantizers import Quantizer

RULES = ("binaryconnect", "stochastic_rounding")


def _per_channel(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))  # [C] -> [C, 1, ...]


class _LowBitMixin:
    """Shared by :class:`LowBitConv2d` and :class:`LowBitLinear` (``weight``: output channel first)."""

    weight: nn.Parameter
    weight_scale: torch.Tensor      # [C] float: the grid's spacing per output channel
    weight_threshold: torch.Tensor  # [C] float: ternary's deterministic threshold (0 otherwise)

    def _init_lowbit(self, quantizer: Quantizer, rule: str, stochastic_forward: bool) -> None:
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        self.quantizer, self.rule, self.stochastic_forward = quantizer, rule, stochastic_forward
        w = self.weight.detach()
        self.register_buffer("weight_scale", quantizer.scale(w).clone())  # type: ignore[attr-defined]
        self.register_buffer("weight_threshold", quantizer.threshold(w).clone())  # type: ignore[attr-defined]
        with torch.no_grad():
            if rule == "stochastic_rounding":  # SR starts on the grid and never leaves it
                self.weight.copy_(self.grid_weight(stochastic=True))
            else:
                self.weight.copy_(self._clipped(self.weight))

    def codes(self, stochastic: bool = False) -> torch.Tensor:
        """Integer codes of the current weight (float tensor shaped like ``weight``)."""
        return self.quantizer.codes(self.weight, self.weight_scale, stochastic=stochastic,
                                    threshold=self.weight_threshold)

    def grid_weight(self, stochastic: bool = False) -> torch.Tensor:
        """``scale * codes``: the weight the network computes with (BC's ``W_b = Q(W_r)``)."""
        return _per_channel(self.weight_scale, self.weight) * self.codes(stochastic)

    def effective_weight(self) -> torch.Tensor:
        """The forward weight. SR: ``weight`` itself (on the grid). BC: ``Q(W_r)`` whose gradient
        is passed unchanged to ``W_r`` (straight-through: ``dL/dW_r := dL/dW_b``)."""
        if self.rule == "stochastic_rounding":
            return self.weight
        wb = self.grid_weight(stochastic=self.stochastic_forward and self.training)  # type: ignore[attr-defined]
        return self.weight + (wb - self.weight).detach()

    def _clipped(self, w: torch.Tensor) -> torch.Tensor:
        r = _per_channel(self.weight_scale * self.quantizer.qmax, w)  # the grid's outermost points
        return torch.maximum(torch.minimum(w, r), -r)

    @torch.no_grad()
    def after_step(self) -> None:
        """BC: clip ``W_r`` to the quantizer's range. SR: ``W <- Q_s(W)`` (back onto the grid)."""
        if self.rule == "stochastic_rounding":
            self.weight.copy_(self.grid_weight(stochastic=True))
        else:
            self.weight.copy_(self._clipped(self.weight))

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", {self.quantizer.describe()}, rule={self.rule}"  # type: ignore[misc]
                + (", stochastic_forward" if self.stochastic_forward else ""))


class LowBitConv2d(_LowBitMixin, nn.Conv2d):
    """``nn.Conv2d`` whose forward uses quantized weights (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, Cin, H, W] -> [N, Cout, H', W']
        return self._conv_forward(x, self.effective_weight(), self.bias)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, quantizer: Quantizer, rule: str,
                   stochastic_forward: bool = False) -> LowBitConv2d:
        """A low-bit copy of ``conv`` (same hyper-parameters, device, dtype, initial weights)."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,  # type: ignore[arg-type]
                  padding=conv.padding, dilation=conv.dilation, groups=conv.groups,  # type: ignore[arg-type]
                  bias=conv.bias is not None, padding_mode=conv.padding_mode,
                  device=conv.weight.device, dtype=conv.weight.dtype)
        new.load_state_dict(conv.state_dict())
        new._init_lowbit(quantizer, rule, stochastic_forward)
        return new


class LowBitLinear(_LowBitMixin, nn.Linear):
    """``nn.Linear`` whose forward uses quantized weights (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, in] -> [N, out]
        return F.linear(x, self.effective_weight(), self.bias)

    @classmethod
    def from_float(cls, linear: nn.Linear, quantizer: Quantizer, rule: str,
                   stochastic_forward: bool = False) -> LowBitLinear:
        """A low-bit copy of ``linear`` (same shape, device, dtype, initial weights)."""
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                  device=linear.weight.device, dtype=linear.weight.dtype)
        new.load_state_dict(linear.state_dict())
        new._init_lowbit(quantizer, rule, stochastic_forward)
        return new


LOWBIT_LAYERS = (LowBitConv2d, LowBitLinear)


@dataclass(frozen=True)
class LowBitCodes:
    """What a deployed low-bit layer carries (``module.lowbit``) for packing and verification.

    ``weight == scale[:, None, ...] * codes`` exactly, in float32. When a BatchNorm was folded into
    the layer, ``scale`` already includes its ``gamma / sqrt(var + eps)`` (codes are unchanged).
    """

    codes: torch.Tensor   # int8, shaped like the weight ([Cout, Cin/g, kh, kw] or [out, in])
    scale: torch.Tensor   # float32 [Cout]
    scheme: str
    bits: int
    rule: str
    folded_bn: str | None = None  # name of the BatchNorm2d folded into this layer, if any


def _plain_copy(m: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A plain Conv2d/Linear with ``m``'s hyper-parameters and the given weight and bias."""
    if isinstance(m, nn.Conv2d):
        plain: nn.Module = nn.Conv2d(
            m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,  # type: ignore[arg-type]
            padding=m.padding, dilation=m.dilation, groups=m.groups,  # type: ignore[arg-type]
            bias=bias is not None, padding_mode=m.padding_mode)
    else:
        plain = nn.Linear(m.in_features, m.out_features, bias=bias is not None)  # type: ignore[arg-type]
    plain.weight = nn.Parameter(weight)
    if bias is not None:
        plain.bias = nn.Parameter(bias)
    return plain.to(weight.device)


def finalize_lowbit(model: nn.Module) -> nn.Module:
    """The deployable copy of a BC/SR-trained model: plain Conv2d/Linear layers whose weights are
    exactly ``scale * codes`` (deterministic ``Q_d`` of ``W_r`` for BC; SR's weights as they are).

    A BatchNorm2d that directly follows a low-bit conv is folded into its per-channel scale and
    bias (the codes do not change) and replaced by ``nn.Identity``; a channel whose folded scale
    would be negative (gamma < 0) flips its codes instead, so scales stay >= 0. Each low-bit layer
    carries a :class:`LowBitCodes` as ``module.lowbit``. Returned in eval mode.

    Example:
        >>> deployed = finalize_lowbit(trained)
        >>> deployed.features.block1.conv1.lowbit.codes.unique()
        tensor([-1,  1], dtype=torch.int8)
    """
    target = copy.deepcopy(model).eval()
    bn_after = dict(conv_bn_pairs(target))
    for name, m in list(target.named_modules()):
        if not isinstance(m, LOWBIT_LAYERS):
            continue
        with torch.no_grad():
            codes = m.codes(stochastic=False).detach()  # SR: weights are on the grid -> exact codes
            scale = m.weight_scale.detach().clone()
            bias = m.bias.detach().clone() if m.bias is not None else None
            bn_name = bn_after.get(name) if isinstance(m, nn.Conv2d) else None
            if bn_name is not None:
                mul, add = fold_factors(target.get_submodule(bn_name))  # type: ignore[arg-type]
                bias = (bias * mul if bias is not None else 0) + add
                scale = scale * mul
                codes = codes * _per_channel(torch.sign(scale) + (scale == 0).to(scale.dtype), codes)
                scale = scale.abs()
                set_module(target, bn_name, nn.Identity())
            weight = (_per_channel(scale, codes) * codes).contiguous()  # float32, bit-exact s * q
        info = LowBitCodes(codes=codes.to(torch.int8).cpu(), scale=scale.float().cpu(),
                            scheme=m.quantizer.scheme, bits=m.quantizer.bits, rule=m.rule, folded_bn=bn_name)
        plain = _plain_copy(m, weight, bias)
        plain.lowbit = info  # type: ignore[assignment]  # a plain attribute: invisible to export
        set_module(target, name, plain)
    return target


def lowbit_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every deployed low-bit layer (those carrying ``.lowbit``), in order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(getattr(m, "lowbit", None), LowBitCodes)]


__all__ = ["LOWBIT_LAYERS", "RULES", "LowBitConv2d", "LowBitLinear", "LowBitCodes", "finalize_lowbit",
           "lowbit_modules"]

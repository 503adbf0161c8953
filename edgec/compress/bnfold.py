"""Find Conv2d -> BatchNorm2d pairs by tracing the model, and fold each BatchNorm into its conv.

Quantized deployment wants the weights the runtime actually multiplies with: INT8 QAT trains the
folded conv (so its learned weight scales are those of the deployed weights) and low-bit export
folds BN into the per-channel scale (a conv ``W = s * q`` followed by BN is ``W' = s' * q`` with
``s' = s * gamma / sqrt(var + eps)``, still on the same integer codes).

Pairs are found with ``torch.fx`` (a BN whose only input is a conv's output, used by nothing else),
not by layer names, so residual blocks (``conv1``/``bn1`` attributes) fold as well as Sequentials.

Example:
    >>> pairs = conv_bn_pairs(model)            # [('features.block1.conv1', 'features.block1.bn1'), ...]
    >>> folded = fold_batchnorm(model)          # a copy in eval mode; each BN replaced by Identity
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgec.errors import ModelError


class _LayerTracer(torch.fx.Tracer):
    # Conv/Linear/BN subclasses (edgec's quantized layers) stay single call_module nodes.
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) or super().is_leaf_module(m, qualname)


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(conv_name, bn_name)`` for every BatchNorm2d that directly and only follows a Conv2d.

    Example:
        >>> conv_bn_pairs(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
        [('0', '1')]
    """
    modules = dict(model.named_modules())
    try:
        graph = _LayerTracer().trace(model)
    except Exception as exc:  # fx raises many types for untraceable Python control flow
        raise ModelError(f"cannot trace {type(model).__name__} to find Conv2d -> BatchNorm2d pairs: "
                         f"{type(exc).__name__}: {exc}",
                         hint="quantized training needs a model without data-dependent control flow "
                              "(the registry's families all trace)") from exc
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0] if node.args else None
        if (isinstance(src, torch.fx.Node) and src.op == "call_module"
                and isinstance(modules.get(src.target), nn.Conv2d) and len(src.users) == 1):
            pairs.append((str(src.target), str(node.target)))
    return pairs


def fold_factors(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mul [C], add [C])`` with ``bn(y) = mul * y + add`` per channel (eval mode, running stats)."""
    var, mean = bn.running_var.detach(), bn.running_mean.detach()
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(var)
    mul = gamma / torch.sqrt(var + bn.eps)
    return mul, beta - mean * mul


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule called ``name`` (dotted path) with ``module``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def fold_batchnorm(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold every traced Conv2d -> BatchNorm2d pair; return the model in eval mode.

    Each conv gets ``W * mul`` (per output channel) and bias ``b * mul + add``; the BN becomes an
    ``nn.Identity`` under the same name. The result computes the same function as ``model.eval()``.

    Example:
        >>> x = torch.randn(4, 1, 8, 8); ref = model.eval()(x)
        >>> torch.allclose(fold_batchnorm(model)(x), ref, atol=1e-5)
        True
    """
    target = model if inplace else copy.deepcopy(model)
    target.eval()
    for conv_name, bn_name in conv_bn_pairs(target):
        conv: nn.Conv2d = target.get_submodule(conv_name)  # type: ignore[assignment]
        bn: nn.BatchNorm2d = target.get_submodule(bn_name)  # type: ignore[assignment]
        mul, add = fold_factors(bn)
        with torch.no_grad():
            conv.weight.mul_(mul.reshape(-1, 1, 1, 1))
            bias = conv.bias.detach() * mul + add if conv.bias is not None else add
            conv.bias = nn.Parameter(bias.clone())
        set_module(target, bn_name, nn.Identity())
    return target


__all__ = ["conv_bn_pairs", "fold_batchnorm", "fold_factors", "set_module"]

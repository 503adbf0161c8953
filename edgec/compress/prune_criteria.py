"""Pruning criteria for whole feature maps (Molchanov et al., ICLR 2017, arXiv:1611.06440).

Every criterion maps a model, its :class:`ChannelGroup` s and a few batches to one raw score per
feature map (higher = more important), registered by name:

- ``"taylor"`` (Sec. 2.2, eq. 8): per example n, ``|mean over the M spatial positions of
  dC_n/dz * z|`` where z is the gated map of eq. 1 (the map after BN and ReLU) and C_n that
  example's loss; averaged over the examples seen. For a coupled residual stream the products of
  all its members (the maps that are added: stem output, shortcut BN, each block's BN2) are summed
  per example before the absolute value: the first-order change when all of them are gated.
  A dependency-graph group (:mod:`edgec.compress.prune_dg`, any CNN; ``ChannelGroup.joint`` False)
  holds maps in series too (expand -> depthwise -> SE gate), whose products measure different
  layers and may cancel: its score is the sum of each map's own ``|mean(dC_n/dz * z)|``.
- ``"weight"`` (minimum weight): ``(1/I) sum_i w_i^2`` over the map's kernel(s), I = their size
  (the paper's Theta_MW: the squared l2 norm divided by the kernel size).
- ``"activation"`` (mean activation, Theta_MA): mean of the map after its ReLU, over examples and
  positions (for a residual stream, over each block's output after the addition).
- ``"random"``: uniform random scores (the paper's sanity baseline).

:func:`rank_scores` then applies Sec. 2.3's layer-wise l2 normalisation (each group's scores
divided by their l2 norm) and Sec. 2.4's FLOPs regularisation, ``score - lambda * Theta_flops``,
with lambda = 1e-3 by default as in the paper. Theta_flops of a map is the cost of computing it,
counted like the paper's appendix for a sliding-window convolution, ``2*H*W*(C_in*K^2 + 1)``
FLOPs (multiply + add per MAC, +1 for the bias that BN folds into), summed over the convs that
produce the map and **expressed in MFLOPs (1e6 FLOPs)**: the VGG-16 values quoted from the
paper's appendix (jacobgil/pytorch-pruning issue #10: 57.8 for conv1_2, 1.8 for conv5_x) are this
count for one map in that unit. On small inputs the term is therefore small
(a 28x28 MNIST CNN's maps cost < 1 MFLOP); raise lambda to make it matter there.

Example:
    >>> raw = criterion_scores("taylor", model, groups, batches)      # {group: (C,) tensor}
    >>> scores = rank_scores(raw, map_mflops(model, groups, (1, 28, 28)), flops_lambda=1e-3)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from edgec.compress.prune_graph import ChannelGroup
from edgec.registry import Registry
from edgec.train import cross_entropy_loss

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]   # (x (B, C, H, W), y (B,)) on the model's device
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Criterion = Callable[..., dict[str, torch.Tensor]]

CRITERIA: Registry[Criterion] = Registry("pruning criterion", field="prune.criterion")


def register_criterion(name: str) -> Callable[[Criterion], Criterion]:
    """Register ``fn(model, groups, batches, loss_fn, generator) -> {group name: (C,) scores}``.

    Example:
        >>> @register_criterion("l1")
        ... def l1(model, groups, batches, loss_fn, generator): ...
    """
    return CRITERIA.register(name)


def available_criteria() -> list[str]:
    """Names of the registered criteria.

    Example:
        >>> available_criteria()
        ['activation', 'random', 'taylor', 'weight']
    """
    return sorted(CRITERIA.names())


def check_criterion(name: str) -> str:
    """Return ``name`` if registered, else raise :class:`RecipeError` with the closest name.

    Example:
        >>> check_criterion("taylr")     # RecipeError: ... did you mean 'taylor'?
    """
    return CRITERIA.canonical(name)


def criterion_scores(name: str, model: nn.Module, groups: list[ChannelGroup], batches: Batches,
                     loss_fn: LossFn | None = None,
                     generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Raw scores (before normalisation) of criterion ``name``: {group name: (C,) float64 CPU}.

    ``loss_fn(model, x, y)`` must return the batch *mean* (like cross-entropy), so that
    ``B * dloss/dz`` is each example's own gradient; the model runs in eval mode (BN running
    statistics, no dropout), so examples do not interact. Its mode is restored afterwards.

    Example:
        >>> criterion_scores("weight", model, channel_groups(model), [])["features.block1.conv1"]
    """
    fn = CRITERIA.get(name)
    was_training = model.training
    model.eval()
    try:
        return fn(model, groups, batches, loss_fn or cross_entropy_loss, generator)
    finally:
        model.train(was_training)


def _capture(model: nn.Module, names: set[str]) -> tuple[dict[str, torch.Tensor], list]:
    """Forward hooks that keep each named module's latest output (N, C, H, W).

    The model goes on with a copy of it: an in-place op downstream (torchvision's
    ``out += identity``, ``ReLU(inplace=True)``) would otherwise overwrite the kept map.
    """
    outputs: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())

    def hook(name: str):
        def keep(_m: nn.Module, _inp: object, out: torch.Tensor) -> torch.Tensor:
            outputs[name] = out
            return out.clone()
        return keep
    return outputs, [modules[n].register_forward_hook(hook(n)) for n in sorted(names)]


@register_criterion("taylor")
def taylor_scores(model: nn.Module, groups: list[ChannelGroup], batches: Batches, loss_fn: LossFn,
           generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Theta_TE of eq. 8 (see the module docstring)."""
    points = {p for g in groups for p in g.taylor_points}
    outputs, handles = _capture(model, points)
    sums = {g.name: torch.zeros(g.size, dtype=torch.float64) for g in groups}
    seen = 0
    try:
        for x, y in batches:
            outputs.clear()
            loss = loss_fn(model, x, y)                           # batch mean
            names = sorted(outputs)
            grads = torch.autograd.grad(loss, [outputs[n] for n in names])  # no param .grad touched
            b = x.shape[0]
            # (B, C): each example's mean over positions of dC_n/dz * z, with dC_n/dz = B * dC/dz.
            per_point = {n: (g * outputs[n]).mean(dim=(2, 3)).detach().double() * b
                         for n, g in zip(names, grads)}
            for group in groups:
                if group.joint:   # gate all coupled (added) maps at once
                    total = sum(per_point[p] for p in group.taylor_points).abs()
                else:             # each removed map's own score, summed
                    total = sum(per_point[p].abs() for p in group.taylor_points)
                sums[group.name] += total.sum(dim=0).cpu()
            seen += b
    finally:
        for h in handles:
            h.remove()
    if seen == 0:
        raise ValueError("the taylor criterion needs at least one batch")
    return {k: v / seen for k, v in sums.items()}


@register_criterion("activation")
def activation_scores(model: nn.Module, groups: list[ChannelGroup], batches: Batches, loss_fn: LossFn,
               generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Theta_MA: mean activation of the map after its ReLU."""
    points = {p for g in groups for p in g.activation_points}
    outputs, handles = _capture(model, points)
    sums = {g.name: torch.zeros(g.size, dtype=torch.float64) for g in groups}
    seen = 0
    try:
        with torch.no_grad():
            for x, _y in batches:
                model(x)
                for group in groups:   # (B, C, H, W) -> (C,): summed over examples and points
                    sums[group.name] += sum(outputs[p].double().mean(dim=(2, 3)).sum(dim=0)
                                            for p in group.activation_points).cpu() \
                        / len(group.activation_points)
                seen += x.shape[0]
    finally:
        for h in handles:
            h.remove()
    if seen == 0:
        raise ValueError("the activation criterion needs at least one batch")
    return {k: v / seen for k, v in sums.items()}


@register_criterion("weight")
def weight_scores(model: nn.Module, groups: list[ChannelGroup], batches: Batches, loss_fn: LossFn,
           generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Theta_MW: mean squared kernel weight of the map (over all its producing convs)."""
    modules = dict(model.named_modules())
    out = {}
    for group in groups:
        # (O, I, kh, kw) -> (O, I*kh*kw) per producer, concatenated along the kernel axis.
        rows = torch.cat([modules[c].weight.detach().flatten(1) for c in group.convs], dim=1)
        out[group.name] = rows.double().pow(2).mean(dim=1).cpu()
    return out


@register_criterion("random")
def random_scores(model: nn.Module, groups: list[ChannelGroup], batches: Batches, loss_fn: LossFn,
           generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Uniform random scores in [0, 1) from ``generator``."""
    return {g.name: torch.rand(g.size, generator=generator, dtype=torch.float64) for g in groups}


def map_mflops(model: nn.Module, groups: list[ChannelGroup],
               input_shape: tuple[int, int, int]) -> dict[str, float]:
    """Theta_flops per group: MFLOPs to compute one of its maps, ``2*H*W*(C_in*K^2 + 1) / 1e6``.

    H, W are the producing conv's output size, measured with one batch-1 forward pass.

    Example:
        >>> map_mflops(conv_model, groups, (1, 4, 4))    # a 3x3 conv 1->2 on 4x4: 2*16*10/1e6
        {'conv': 0.00032}
    """
    convs = {c for g in groups for c in g.convs}
    outputs, handles = _capture(model, convs)
    first = next(model.parameters())
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=first.device, dtype=first.dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    modules = dict(model.named_modules())
    result = {}
    for group in groups:
        total = 0.0
        for c in group.convs:
            conv, (h, w) = modules[c], outputs[c].shape[2:]
            k = conv.kernel_size[0] * conv.kernel_size[1]
            total += 2.0 * h * w * (conv.in_channels // conv.groups * k + 1)
        result[group.name] = total / 1e6
    return result


def rank_scores(raw: dict[str, torch.Tensor], mflops: dict[str, float] | None = None,
                flops_lambda: float = 1e-3) -> dict[str, torch.Tensor]:
    """Sec. 2.3 + 2.4: ``raw / ||raw||_2`` per group, minus ``flops_lambda * mflops[group]``.

    A group whose scores are all zero stays zero (no division by zero).

    Example:
        >>> rank_scores({"a": torch.tensor([3.0, 4.0])}, {"a": 10.0}, 1e-3)["a"]
        tensor([0.5900, 0.7900], dtype=torch.float64)
    """
    out = {}
    for name, scores in raw.items():
        scores = scores.double()
        norm = torch.linalg.vector_norm(scores)
        normed = scores / norm if norm > 0 else scores.clone()
        out[name] = normed - (flops_lambda * mflops[name] if mflops else 0.0)
    return out

"""The layer shapes of a pruned model, as plain JSON: what rebuilds a pruned external model.

A torchvision, timm or ``python:`` model has no ``channels`` param that edgec could set, so after
channel pruning (:mod:`edgec.compress.prune_dg`) its :class:`~edgec.models.ModelSpec` carries a
``structure``: for every module whose shape pruning changed, its class name and shape attributes,

- ``Conv1d/2d/3d``: ``in_channels``, ``out_channels``, ``groups`` (a depthwise conv keeps
  ``groups == in_channels == out_channels``),
- ``BatchNorm1d/2d/3d`` (and subclasses such as timm's ``BatchNormAct2d``): ``num_features``,
- ``Linear``: ``in_features``, ``out_features``,

like Torch-Pruning's ``tp.state_dict`` keeps its ``attributions``, but JSON instead of pickle (a model
file must never run code). :func:`apply_structure` resizes a freshly built model's modules to those
shapes (new parameters, re-initialised), so the pruned weights load into ``spec.build()`` strictly.

Example:
    >>> structure = record_structure(pruned, reference=spec.build())   # only what changed
    >>> model = apply_structure(spec.build(), structure)
    >>> model.load_state_dict(pruned.state_dict())
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgec.errors import ModelError

_CONV = nn.modules.conv._ConvNd
_NORM = nn.modules.batchnorm._BatchNorm
_SHAPES: tuple[tuple[type, tuple[str, ...]], ...] = (
    (_CONV, ("in_channels", "out_channels", "groups")),
    (_NORM, ("num_features",)),
    (nn.Linear, ("in_features", "out_features")),
)


def _shape_attrs(module: nn.Module) -> tuple[str, ...] | None:
    for kind, attrs in _SHAPES:
        if isinstance(module, kind) and not isinstance(module, nn.modules.conv._ConvTransposeNd):
            return attrs
    return None


def _param_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in [*module.named_parameters(recurse=False),
                                           *module.named_buffers(recurse=False)] if v is not None}


def record_structure(model: nn.Module, reference: nn.Module | None = None) -> dict[str, dict[str, Any]]:
    """``{module name: {"type": class name, shape attrs...}}`` of ``model``'s convs, norms and linears.

    With ``reference`` (the same architecture, unpruned), only the modules whose shape differs are
    recorded. A module of another kind whose parameter shapes differ from the reference's raises
    :class:`ModelError` (it could not be rebuilt).

    Example:
        >>> record_structure(pruned, reference=spec.build())["layer1.0.conv1"]
        {'type': 'Conv2d', 'in_channels': 40, 'out_channels': 24, 'groups': 1}
    """
    ref = dict(reference.named_modules()) if reference is not None else {}
    out: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        attrs = _shape_attrs(module)
        other = ref.get(name)
        if attrs is None:
            if other is not None and _param_shapes(other) != _param_shapes(module):
                raise ModelError(f"module '{name}' ({type(module).__name__}) changed shape and edgec "
                                 "cannot record it", hint="prune only convolutions, batch norms and linears")
            continue
        entry = {"type": type(module).__name__, **{a: int(getattr(module, a)) for a in attrs}}
        if reference is not None:
            if other is None:
                raise ModelError(f"module '{name}' is not in the reference model",
                                 hint="record the structure against the model the pruned one came from")
            if type(other) is type(module) and all(getattr(other, a) == entry[a] for a in attrs):
                continue
        out[name] = entry
    return out


def _resize(name: str, module: nn.Module, entry: dict[str, Any]) -> None:
    attrs = _shape_attrs(module)
    if attrs is None or entry.get("type") != type(module).__name__:
        raise ModelError(f"the model's module '{name}' is a {type(module).__name__}, but its recorded "
                         f"structure says {entry.get('type')!r}",
                         hint="the model source changed since the model was pruned; prune it again")
    missing = [a for a in attrs if not isinstance(entry.get(a), int) or entry[a] < 1]
    if missing:
        raise ModelError(f"structure of '{name}': {missing} must be positive integers, got {entry}",
                         hint="the model file is corrupt; re-create it")
    for a in attrs:
        setattr(module, a, entry[a])
    factory = {"device": next(iter(module.parameters()), torch.empty(0)).device}
    if isinstance(module, _CONV):
        if module.in_channels % module.groups or module.out_channels % module.groups:
            raise ModelError(f"structure of '{name}': channels {module.in_channels}/{module.out_channels} "
                             f"are not divisible by groups={module.groups}", hint="re-create the model file")
        shape = (module.out_channels, module.in_channels // module.groups, *module.kernel_size)
        module.weight = nn.Parameter(torch.empty(shape, **factory))
        if module.bias is not None:
            module.bias = nn.Parameter(torch.empty(module.out_channels, **factory))
        module.reset_parameters()
    elif isinstance(module, _NORM):
        n = module.num_features
        if module.affine:
            module.weight = nn.Parameter(torch.empty(n, **factory))
            module.bias = nn.Parameter(torch.empty(n, **factory))
        if module.track_running_stats:
            module.running_mean = torch.zeros(n, **factory)
            module.running_var = torch.ones(n, **factory)
        module.reset_parameters()
    else:
        module.weight = nn.Parameter(torch.empty(module.out_features, module.in_features, **factory))
        if module.bias is not None:
            module.bias = nn.Parameter(torch.empty(module.out_features, **factory))
        module.reset_parameters()


def apply_structure(model: nn.Module, structure: dict[str, dict[str, Any]]) -> nn.Module:
    """Resize ``model``'s modules (in place) to ``structure``'s shapes; returns ``model``.

    Resized modules get freshly initialised parameters (their ``reset_parameters``): load the pruned
    weights afterwards. A name the model lacks raises :class:`ModelError`.

    Example:
        >>> model = apply_structure(spec.build(), {"fc": {"type": "Linear", "in_features": 256,
        ...                                                "out_features": 10}})
    """
    modules = dict(model.named_modules())
    for name, entry in structure.items():
        if name not in modules or not isinstance(entry, dict):
            raise ModelError(f"the recorded structure names module '{name}', which the model lacks",
                             hint="the model source changed since the model was pruned; prune it again")
        _resize(name, modules[name], entry)
    return model

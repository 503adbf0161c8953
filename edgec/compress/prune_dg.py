"""Channel groups and physical removal for any CNN, through Torch-Pruning's dependency graph.

edgec's own families are walked by hand (:mod:`edgec.compress.prune_graph`; their ``channels`` param
rebuilds them). A torchvision, timm or ``python:`` model is traced instead by Torch-Pruning's
``DependencyGraph`` (Fang et al., CVPR 2023): ``DG.get_all_groups`` returns, for every conv's output
channels, every layer that must be sliced with them: the BNs after it, the convs and linears that
read them, and through residual additions and squeeze-excitation products the other convs whose
outputs meet them (torchvision ResNet's residual streams, MobileNetV2/V3's expand -> depthwise -> SE
chain, where a depthwise conv's groups follow its channels). Each such group becomes a
:class:`ChannelGroup`, so the criteria, the FLOPs model (:class:`CostModel`) and the schedule are the
same code as for our families:

- ``producers``: each conv of the group whose *output* channels are removed, paired with the BN
  that reads it directly (``[conv, bn]``; a BN of the group that follows no conv of it is
  ``[None, bn]``); a depthwise conv is a producer (its input channels go with its output);
- ``consumers``: convs (groups = 1) and linears whose *input* channels are removed;
- ``taylor_points`` = ``activation_points``: each producer's map, the BN's output when it has one
  (Molchanov's z: the map a channel's removal zeroes), else the conv's;
- ``joint`` = False: a group's Taylor score per channel is the **sum** of the Molchanov scores of
  the maps it removes (see :mod:`edgec.compress.prune_criteria`). Sum or mean rank the same after
  the layer-wise l2 normalisation (they differ by the group's constant map count); the sum is
  the first-order loss change of removing all of them, which is what the FLOPs term is traded
  against.

Groups are left unpruned (never wrong) when they touch the network's output (the classifier's
classes), remap channel indices (concatenation, split, flatten of a spatial map into a linear), or
contain a layer kind edgec cannot rebuild (grouped but not depthwise convs, LayerNorm, PReLU...).
The network input's channels are never a group. Removal is Torch-Pruning's ``group.prune(idxs)`` on a
copy; the new :class:`ModelSpec` carries the changed layer shapes as its ``structure``
(:mod:`edgec.models.structure`), checked by loading the pruned weights into ``spec.build()``.

Example:
    >>> groups = dg_channel_groups(model, spec.input_shape())
    >>> small, small_spec = dg_remove_channels(model, spec, groups, {groups[0].name: [0, 2, 5]})
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch_pruning as tp
from torch import nn

from edgec.compress.prune_graph import ChannelGroup, checked_keep
from edgec.errors import ModelError
from edgec.models import ModelSpec
from edgec.models import sources
from edgec.models.structure import record_structure

_T = tp.ops.OPTYPE
_PASS = (_T.ELEMENTWISE, _T.RESHAPE)   # parameter-free ops inside a group (add, mul, flatten)
_LAYERS = (_T.CONV, _T.DEPTHWISE_CONV, _T.BN, _T.LINEAR)


def uses_dependency_graph(spec: ModelSpec) -> bool:
    """True for models that edgec does not build itself (``torchvision:``, ``timm:``, ``python:``).

    Example:
        >>> uses_dependency_graph(ModelSpec("python:my.models:resnet", {}, 3, 10, 32))
        True
    """
    return sources.is_external(spec.name)


def _graph(model: nn.Module, input_shape: tuple[int, ...]) -> tp.DependencyGraph:
    """Torch-Pruning's graph of ``model``, traced in eval mode (BN statistics untouched)."""
    first = next(model.parameters())
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(
                model, torch.zeros((1, *input_shape), device=first.device, dtype=first.dtype), verbose=False)
    except Exception as exc:   # the tracer raises whatever the model's forward raised
        raise ModelError(f"Torch-Pruning cannot trace {type(model).__name__} on an input of shape "
                         f"{(1, *input_shape)}: {exc}",
                         hint="check in_channels and input_size; the model must run on one tensor") from exc
    finally:
        model.train(was_training)


def _group(tp_group, graph: tp.DependencyGraph, names: dict[nn.Module, str],
           order: dict[str, int]) -> ChannelGroup | None:
    """A :class:`ChannelGroup` for one Torch-Pruning group, or None if it must stay unpruned."""
    outs: list[str] = []
    consumers: list[str] = []
    for item in tp_group.items:
        dep = item.dep
        kind = dep.target.type
        if kind in _PASS:
            if list(item.idxs) != list(item.root_idxs):
                return None
            continue
        if kind not in _LAYERS or list(item.idxs) != list(item.root_idxs):
            return None   # the output, concat/split/flatten remaps, or a layer we cannot rebuild
        module = dep.target.module
        if not isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            return None
        is_out = graph.is_out_channel_pruning_fn(dep.handler)
        if isinstance(module, nn.Conv2d) and module.groups != 1 and kind != _T.DEPTHWISE_CONV:
            return None
        if is_out and isinstance(module, nn.Linear):
            return None
        (outs if is_out or kind == _T.DEPTHWISE_CONV else consumers).append(names[module])
    outs = sorted(set(outs), key=order.__getitem__)
    convs = [n for n in outs if isinstance(graph.model.get_submodule(n), nn.Conv2d)]
    if not convs:
        return None
    producers: list[list[str | None]] = []
    paired: set[str] = set()
    for conv in convs:
        readers = [names.get(n.module) for n in graph.module2node[graph.model.get_submodule(conv)].outputs]
        bn = next((r for r in readers if r in outs and r not in convs and r not in paired), None)
        producers.append([conv, bn])
        if bn:
            paired.add(bn)
    producers += [[None, n] for n in outs if n not in convs and n not in paired]
    points = [bn or conv for conv, bn in producers]
    size = len(tp_group[0].idxs)
    return ChannelGroup(convs[0], size, producers, sorted(set(consumers), key=order.__getitem__),
                        taylor_points=points, activation_points=points, residual=len(convs) > 1,
                        joint=False)


def dg_channel_groups(model: nn.Module, input_shape: tuple[int, int, int]) -> list[ChannelGroup]:
    """The prunable channel groups of any CNN (see the module docstring), in model order.

    Example:
        >>> groups = dg_channel_groups(tests.realistic_models.resnet(10), (3, 32, 32))
        >>> [g.name for g in groups if g.residual][:1]      # the stem and its residual stream
        ['conv1']
    """
    graph = _graph(model, input_shape)
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, n in enumerate(names.values())}
    groups = [g for g in (_group(t, graph, names, order)
                          for t in graph.get_all_groups(root_module_types=(nn.Conv2d,))) if g]
    if not groups:
        raise ModelError(f"no prunable channels found in {type(model).__name__}",
                         hint="channel pruning needs convolutions whose outputs do not feed the output directly")
    return sorted(groups, key=lambda g: order[g.name])


def dg_remove_channels(model: nn.Module, spec: ModelSpec, groups: list[ChannelGroup],
                       keep: dict[str, list[int] | torch.Tensor]) -> tuple[nn.Module, ModelSpec]:
    """A smaller copy of ``model`` keeping only channels ``keep[group name]``, and its spec.

    The spec's ``structure`` lists every layer whose shape differs from ``spec.build()`` without
    one; the copy's weights are checked to load into the new ``spec.build()``. ``model`` is unchanged.

    Example:
        >>> small, small_spec = dg_remove_channels(model, spec, groups, {"layer1.0.conv1": [0, 3]})
        >>> small_spec.structure["layer1.0.conv1"]["out_channels"]
        2
    """
    chosen = checked_keep(groups, keep)
    sizes = {g.name: g.size for g in groups}
    new = copy.deepcopy(model)
    graph = _graph(new, spec.input_shape())
    for name, idx in chosen.items():
        drop = sorted(set(range(sizes[name])) - set(idx.tolist()))
        if drop:
            module = new.get_submodule(name)
            graph.get_pruning_group(module, graph.get_pruner_of_module(module).prune_out_channels, drop).prune()
    base = dataclasses.replace(spec, structure=None).build()
    new_spec = dataclasses.replace(spec, structure=record_structure(new, reference=base) or None)
    try:
        new_spec.build().load_state_dict(new.state_dict(), strict=True)
    except RuntimeError as exc:
        raise ModelError(f"the pruned {type(model).__name__} does not rebuild from its recorded structure: {exc}",
                         hint="this model's layers cannot be resized by edgec; prune with a different model") from exc
    return new.train(model.training), new_spec

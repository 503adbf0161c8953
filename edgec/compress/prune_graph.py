"""Which channels must be pruned together, and their physical removal.

A :class:`ChannelGroup` is a set of feature maps that share one index ``c`` across layers, so
removing map ``c`` means slicing all of these at once:

- ``producers``: (conv, BatchNorm) pairs whose output channel ``c`` is the map: conv weight
  rows ``W[c]`` (O, I, kh, kw) and BN ``weight/bias/running_mean/running_var[c]``;
- ``consumers``: convs and the first Linear after the global pool whose *input* ``c`` reads the
  map: conv ``W[:, c]`` and Linear ``W[:, c]`` (global average pool + flatten map channel ``c``
  of (N, C, h, w) to feature ``c`` of (N, C), whatever the spatial size);
- ``taylor_points``: modules whose outputs add up to the map (for Molchanov's gate of eq. 1);
- ``activation_points``: modules whose output is the map after its nonlinearity.

A plain conv-BN-ReLU is a group of its own. In ``cifar_resnet`` the convs added by residual
connections are **coupled**: the stem conv and every ``conv2`` of stage 1 (identity shortcuts),
and in stages 2/3 the first block's ``shortcut.conv`` and every ``conv2``, form one group per
stage (the residual stream), pruned together; a block's inner ``conv1`` channels form their own
group. Removal slices a copy of the state dict and loads it into ``spec.build()`` of a spec whose
``channels`` param lists the new widths, so the result is a smaller dense model that round-trips
through ``save_model``/``load_model`` by construction.

Example:
    >>> groups = channel_groups(model)                 # model built from spec
    >>> small, small_spec = remove_channels(model, spec, groups, {"features.block1.conv1": [0, 3]})
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from edgec.errors import ModelError
from edgec.models import ModelSpec, count_flops, count_params
from edgec.models.cifar_resnet import BasicBlock

_PASS_THROUGH = (nn.MaxPool2d, nn.AvgPool2d, nn.Dropout, nn.Identity)


@dataclass
class ChannelGroup:
    """Feature maps pruned together (see the module docstring). ``name`` is its first conv's.

    Example:
        >>> [g.name for g in channel_groups(create_model("fitnet", in_channels=1, num_classes=10,
        ...                                              input_size=8))][:2]
        ['features.stage1.conv1', 'features.stage1.conv2']
    """

    name: str
    size: int
    producers: list[list[str | None]] = field(default_factory=list)   # [[conv, bn or None]]
    consumers: list[str] = field(default_factory=list)
    taylor_points: list[str] = field(default_factory=list)
    activation_points: list[str] = field(default_factory=list)
    residual: bool = False
    # Taylor: True = the coupled maps' products are summed per example before |.| (maps that are
    # added, as in our residual streams); False = each map's own score, summed (dependency-graph
    # groups, whose maps may also be in series: expand -> depthwise -> SE gate).
    joint: bool = True

    @property
    def convs(self) -> list[str]:
        """Names of the convs whose outputs this group is."""
        return [str(conv) for conv, _ in self.producers if conv is not None]


def _unsupported(what: str) -> ModelError:
    return ModelError(f"channel pruning cannot handle {what}",
                      hint="prune models of edgec's families (teacher_cnn, fitnet, cifar_resnet)")


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The prunable channel groups of a ConvClassifier (features -> pool -> flatten -> classifier).

    Example:
        >>> groups = channel_groups(create_model("cifar_resnet", in_channels=3, num_classes=10,
        ...                                      input_size=32))
        >>> sum(g.residual for g in groups)     # one coupled residual stream per stage
        3
    """
    if not all(hasattr(model, a) for a in ("features", "pool", "flatten", "classifier")):
        raise _unsupported(f"a {type(model).__name__} (not features -> pool -> classifier)")
    groups: list[ChannelGroup] = []
    current: ChannelGroup | None = None   # the group whose maps feed the next layer

    def start(conv_name: str, conv: nn.Conv2d) -> ChannelGroup:
        if conv.groups != 1:
            raise _unsupported(f"grouped convolution {conv_name}")
        if current is not None:
            current.consumers.append(conv_name)
        group = ChannelGroup(conv_name, conv.out_channels, [[conv_name, None]],
                             taylor_points=[conv_name], activation_points=[conv_name])
        groups.append(group)
        return group

    def block(prefix: str, blk: BasicBlock) -> ChannelGroup:
        if current is None:
            raise _unsupported(f"a residual block at the network input ({prefix})")
        current.consumers.append(f"{prefix}.conv1")
        mid = ChannelGroup(f"{prefix}.conv1", blk.conv1.out_channels,
                           [[f"{prefix}.conv1", f"{prefix}.bn1"]], [f"{prefix}.conv2"],
                           [f"{prefix}.relu1"], [f"{prefix}.relu1"])
        groups.append(mid)
        if isinstance(blk.shortcut, nn.Sequential):   # projection: a new stream starts here
            current.consumers.append(f"{prefix}.shortcut.conv")
            stream = ChannelGroup(f"{prefix}.shortcut.conv", blk.shortcut.conv.out_channels,
                                  [[f"{prefix}.shortcut.conv", f"{prefix}.shortcut.bn"]],
                                  taylor_points=[f"{prefix}.shortcut.bn"])
            groups.append(stream)
        else:                                         # identity: the input stream continues
            stream = current
        stream.residual = True
        stream.producers.append([f"{prefix}.conv2", f"{prefix}.bn2"])
        stream.taylor_points.append(f"{prefix}.bn2")       # conv2's map before the addition
        stream.activation_points.append(f"{prefix}.relu2")  # the stream after the addition
        return stream

    def walk(module: nn.Module, prefix: str) -> None:
        nonlocal current
        for name, child in module.named_children():
            full = f"{prefix}.{name}"
            if isinstance(child, BasicBlock):
                current = block(full, child)
            elif isinstance(child, nn.Sequential):
                walk(child, full)
            elif isinstance(child, nn.Conv2d):
                current = start(full, child)
            elif isinstance(child, (nn.BatchNorm2d, nn.ReLU)) and current is not None \
                    and not current.residual:
                if isinstance(child, nn.BatchNorm2d):
                    current.producers[-1][1] = full
                current.taylor_points, current.activation_points = [full], [full]
            elif not isinstance(child, _PASS_THROUGH):
                raise _unsupported(f"layer {full} ({type(child).__name__}) inside features")

    walk(model.features, "features")
    if current is None:
        raise _unsupported("a model without convolutions")
    head = next(((n, m) for n, m in model.classifier.named_children() if isinstance(m, nn.Linear)),
                None)
    if head is None or head[1].in_features != current.size:
        raise _unsupported("a classifier whose first Linear does not read the pooled channels")
    current.consumers.append(f"classifier.{head[0]}")
    return groups


def _take(t: torch.Tensor, idx: torch.Tensor, dim: int) -> torch.Tensor:
    return t.index_select(dim, idx.to(t.device)).clone()


def conv_widths(model: nn.Module) -> dict[str, int]:
    """Output channels of every Conv2d by module name (the ``channels`` param of a spec).

    Example:
        >>> conv_widths(model)["features.block1.conv1"]
        32
    """
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def checked_keep(groups: list[ChannelGroup],
                 keep: dict[str, list[int] | torch.Tensor]) -> dict[str, torch.Tensor]:
    """``keep`` as sorted index tensors, after checking each names a group and lists 1..size
    distinct channels in range (else :class:`ModelError`).

    Example:
        >>> checked_keep(groups, {"features.block1.conv1": [3, 0]})
        {'features.block1.conv1': tensor([0, 3])}
    """
    by_name = {g.name: g for g in groups}
    out = {}
    for name, chosen in keep.items():
        if name not in by_name:
            raise ModelError(f"no channel group named '{name}'",
                             hint=f"groups: {', '.join(list(by_name)[:8])}")
        size = by_name[name].size
        idx = torch.as_tensor(chosen, dtype=torch.long).flatten()
        if len(idx) == 0 or len(torch.unique(idx)) != len(idx) or int(idx.min()) < 0 \
                or int(idx.max()) >= size:
            raise ModelError(f"group '{name}': keep must list 1..{size} distinct channels "
                             f"in [0, {size}), got {idx.tolist()}")
        out[name] = torch.sort(idx).values   # the surviving channels in their original order
    return out


def remove_channels(model: nn.Module, spec: ModelSpec, groups: list[ChannelGroup],
                    keep: dict[str, list[int] | torch.Tensor]) -> tuple[nn.Module, ModelSpec]:
    """A new, smaller dense model keeping only channels ``keep[group name]`` (sorted, unique).

    Groups not in ``keep`` keep all their channels. The new model has ``model``'s device, dtype
    and train/eval mode; ``model`` itself is not changed. Returns ``(new model, new spec)``.

    Example:
        >>> small, small_spec = remove_channels(model, spec, channel_groups(model),
        ...                                     {"features.block1.conv1": [0, 2, 5]})
        >>> small_spec.params["channels"]["features.block1.conv1"]
        3
    """
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    by_name = {g.name: g for g in groups}
    for name, idx in checked_keep(groups, keep).items():
        group = by_name[name]
        for conv, bn in group.producers:
            for key in (f"{conv}.weight", f"{conv}.bias"):
                if key in state:
                    state[key] = _take(state[key], idx, 0)        # (O, I, kh, kw) -> (k, I, ...)
            for suffix in ("weight", "bias", "running_mean", "running_var"):
                if bn is not None and f"{bn}.{suffix}" in state:
                    state[f"{bn}.{suffix}"] = _take(state[f"{bn}.{suffix}"], idx, 0)
        for consumer in group.consumers:
            state[f"{consumer}.weight"] = _take(state[f"{consumer}.weight"], idx, 1)  # (O, k, ...)
    widths = {}
    for group in groups:
        n = len(keep[group.name]) if group.name in keep else group.size
        widths.update({conv: n for conv in group.convs})
    new_spec = ModelSpec(spec.name, {**spec.params, "channels": widths}, spec.in_channels,
                         spec.num_classes, spec.input_size)
    new_model = new_spec.build()
    try:
        new_model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"the model does not match its spec '{spec.name}' {spec.params}: {exc}",
                         hint="prune the model together with the spec it was built from") from exc
    first = next(model.parameters())
    return new_model.to(device=first.device, dtype=first.dtype).train(model.training), new_spec


class CostModel:
    """Exact MACs and parameter count of the model as a function of its groups' sizes.

    Pruning one map of a group changes its producers' outputs and its consumers' inputs, so the
    schedule can tell, before removing anything, when a FLOPs/params target is reached. Terms:
    a conv costs ``H_out*W_out*K * C_in * C_out`` MACs and ``K * C_in * C_out`` weights (+ C_out
    bias), a BN ``2 * C``, the first Linear ``C * out``; everything else is a constant measured
    once with :func:`edgec.models.count_flops` / ``count_params``, so totals match them exactly.

    Example:
        >>> cost = CostModel(model, groups, spec.input_shape())
        >>> cost.flops({g.name: g.size for g in groups}) == count_flops(model, spec.input_shape())
        True
    """

    def __init__(self, model: nn.Module, groups: list[ChannelGroup],
                 input_shape: tuple[int, int, int]):
        modules = dict(model.named_modules())
        spatial: dict[str, int] = {}
        hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: spatial.__setitem__(
            n, out.shape[2] * out.shape[3])) for n, m in modules.items() if isinstance(m, nn.Conv2d)]
        first = next(model.parameters())
        was_training = model.training
        try:
            with torch.no_grad():
                model.eval()(torch.zeros((1, *input_shape), device=first.device, dtype=first.dtype))
        finally:
            model.train(was_training)
            for h in hooks:
                h.remove()
        reader = {c: g.name for g in groups for c in g.consumers}
        produced = {c for g in groups for c in g.convs}
        # (input group or None, output group or None, MAC coefficient, parameter coefficient)
        self.terms: list[tuple[str | None, str | None, int, int]] = []
        for group in groups:
            for conv, bn in group.producers:
                if conv is None:   # a BN of the group that follows no conv of it
                    self.terms.append((None, group.name, 0, 2))
                    continue
                m = modules[str(conv)]
                k = m.kernel_size[0] * m.kernel_size[1]
                src = reader.get(str(conv))   # None for a depthwise conv: one input per output map
                fixed_in = 1 if src else m.in_channels // m.groups
                self.terms.append((src, group.name, spatial[str(conv)] * k * fixed_in, k * fixed_in))
                self.terms.append((None, group.name, 0, (m.bias is not None) + 2 * (bn is not None)))
            for consumer in group.consumers:
                m = modules[consumer]
                if isinstance(m, nn.Linear):
                    self.terms.append((group.name, None, m.out_features, m.out_features))
                elif consumer not in produced:   # a conv whose own outputs are not pruned
                    k = m.kernel_size[0] * m.kernel_size[1]
                    self.terms.append((group.name, None, spatial[consumer] * k * m.out_channels,
                                       k * m.out_channels))
        sizes = {g.name: g.size for g in groups}
        self.fixed_flops = count_flops(model, input_shape) - self._sum(sizes, 2)
        self.fixed_params = count_params(model) - self._sum(sizes, 3)

    def _sum(self, sizes: dict[str, int], column: int) -> int:
        return sum((sizes[a] if a else 1) * (sizes[b] if b else 1) * t[column]
                   for t in self.terms for a, b in [t[:2]])

    def flops(self, sizes: dict[str, int]) -> int:
        """MACs at batch 1 when each group has ``sizes[name]`` channels."""
        return self.fixed_flops + self._sum(sizes, 2)

    def params(self, sizes: dict[str, int]) -> int:
        """Parameters when each group has ``sizes[name]`` channels."""
        return self.fixed_params + self._sum(sizes, 3)

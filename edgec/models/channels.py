"""The optional ``channels`` param every family accepts: per-conv output widths, by module name.

Channel pruning (:mod:`edgec.compress.prune`) leaves a model whose convolutions no longer follow
``width``/``widths``; its spec records every conv's output channels as a mapping from the conv's
module name (as in ``model.named_modules()``) to its width, e.g. for ``teacher_cnn``::

    {"features.block1.conv1": 24, "features.block1.conv2": 17, "features.block2.conv1": 64, ...}

Why a mapping by name rather than a list: it says which layer has which width without knowing
the family's traversal order, it stays correct if a family param (``convs_per_block``) changes
the number of convs (a list would silently shift), a partial mapping overrides only the layers it
names, and a typo is reported with the closest real layer name. Names absent from the mapping
keep the width that ``width``/``widths`` give them. Input channels follow from the previous
layer, so only output widths are stored.

Example:
    >>> widths = resolve_channels("fitnet", {"features.stage1.conv1": 8}, {"features.stage1.conv1": 5})
    >>> widths
    {'features.stage1.conv1': 5}
"""

from __future__ import annotations

from collections.abc import Mapping

from edgec.errors import ModelError
from edgec.models.registry import _did_you_mean, is_int


def resolve_channels(model: str, defaults: dict[str, int], channels: object) -> dict[str, int]:
    """``defaults`` (conv name -> width) with the widths that ``channels`` overrides.

    ``channels`` is None (no override) or a mapping from conv module name to a positive int.
    Unknown names and bad widths raise :class:`ModelError` naming the closest real layer.

    Example:
        >>> resolve_channels("teacher_cnn", {"features.block1.conv1": 32}, None)
        {'features.block1.conv1': 32}
    """
    if channels is None:
        return dict(defaults)
    example = next(iter(defaults), "features.block1.conv1")
    if not isinstance(channels, Mapping):
        raise ModelError(f"model '{model}': param 'channels' must be a mapping from conv name to "
                         f"output channels, got {type(channels).__name__}",
                         hint=f"e.g. channels: {{'{example}': 16}}")
    widths = dict(defaults)
    for key, value in channels.items():
        if key not in defaults:
            names = list(defaults)
            shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
            raise ModelError(f"model '{model}': 'channels' names no conv '{key}'"
                             f"{_did_you_mean(str(key), names)}",
                             hint=f"conv names of this model: {shown}")
        if not is_int(value) or value < 1:
            raise ModelError(f"model '{model}': channels['{key}'] must be an integer >= 1, "
                             f"got {value!r}", hint="a conv keeps at least one output channel")
        widths[key] = int(value)
    return widths


def check_coupled(model: str, widths: dict[str, int], groups: list[list[str]]) -> None:
    """Raise :class:`ModelError` unless the convs of each group (added together) share a width.

    Example:
        >>> check_coupled("cifar_resnet", {"a": 16, "b": 16}, [["a", "b"]])
    """
    for group in groups:
        found = {name: widths[name] for name in group}
        if len(set(found.values())) > 1:
            raise ModelError(f"model '{model}': convs {found} add into the same residual stream "
                             f"and must have the same number of output channels",
                             hint="give all of them the same width in 'channels'")

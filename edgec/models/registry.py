"""The named registry of model families: recipes say ``teacher_cnn``, never import code.

A *factory* is a plain function ``fn(in_channels, num_classes, input_size, **params) -> nn.Module``
whose keyword parameters all have defaults; the registry reads the accepted params and their
defaults from its signature, and its description from the first docstring line. Names are looked
up in a dict, so a recipe can only ever pick one of the registered families (no ``eval``, no
import strings).

Example:
    >>> @register_model("tiny_mlp")
    ... def tiny_mlp(in_channels, num_classes, input_size, hidden: int = 32):
    ...     '''A one-hidden-layer MLP.'''
    ...     ...
    >>> model = create_model("tiny_mlp", in_channels=1, num_classes=10, input_size=8, hidden=64)
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from torch import nn

from edgec.errors import ModelError
from edgec.registry import Registry, closest

Factory = Callable[..., nn.Module]

# The three arguments every factory receives positionally; everything after them is a "param".
_FIXED_ARGS = ("in_channels", "num_classes", "input_size")


@dataclass(frozen=True)
class _Entry:
    factory: Factory
    description: str
    defaults: dict[str, Any]
    # Params that default to None and are left out of model_params() and of a spec when unset
    # (e.g. ``channels``, written by pruning): specs of unpruned models stay as they were.
    optional: tuple[str, ...] = ()


def _unknown_model(name: str, best: str | None, known: list[str]) -> ModelError:
    return ModelError(f"unknown model '{name}'" + (f" (did you mean '{best}'?)" if best else ""),
                      hint=f"choose one of: {', '.join(known)}")


MODELS: Registry[_Entry] = Registry("model", on_unknown=lambda name, best, known: _unknown_model(name, best, sorted(known)))


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ``""``."""
    best = closest(word, choices)
    return f" (did you mean '{best}'?)" if best else ""


def register_model(name: str, optional: tuple[str, ...] = ()) -> Callable[[Factory], Factory]:
    """Decorator that registers a model factory under ``name``.

    The factory's first three parameters must be ``in_channels, num_classes, input_size``; every
    other parameter must have a default (those defaults are what :func:`model_params` reports).
    ``optional`` names params that default to ``None`` and are accepted but not reported by
    :func:`model_params` (nor stored in a :class:`ModelSpec` while unset), such as the per-layer
    ``channels`` that channel pruning writes.

    Example:
        >>> @register_model("my_net")
        ... def my_net(in_channels, num_classes, input_size, width: int = 16):
        ...     '''My small net.'''
        ...     h, w = input_size
        ...     return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * h * w, num_classes))
    """

    def decorate(factory: Factory) -> Factory:
        # Registration errors are edgec programming bugs, not user mistakes: plain exceptions.
        if name in MODELS:
            raise ValueError(f"model '{name}' is already registered")
        sig = inspect.signature(factory)
        names = list(sig.parameters)
        if tuple(names[:3]) != _FIXED_ARGS:
            raise TypeError(f"factory for '{name}' must start with {_FIXED_ARGS}, got {names[:3]}")
        defaults: dict[str, Any] = {}
        for p in list(sig.parameters.values())[3:]:
            if p.default is inspect.Parameter.empty or p.kind not in (
                    p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                raise TypeError(f"factory for '{name}': param '{p.name}' needs a default value")
            defaults[p.name] = p.default
        for opt in optional:
            if defaults.get(opt, ...) is not None:
                raise TypeError(f"factory for '{name}': optional param '{opt}' must default to None")
            del defaults[opt]
        doc = inspect.getdoc(factory) or ""
        description = doc.strip().splitlines()[0] if doc.strip() else name
        MODELS.register(name, _Entry(factory, description, defaults, tuple(optional)))
        return factory

    return decorate


def _entry(name: str) -> _Entry:
    return MODELS.get(name)


def list_models() -> dict[str, str]:
    """Return ``{name: one-line description}`` of every registered model family, sorted by name.

    Example:
        >>> list_models()["fitnet"]
        'FitNets-style thin-and-deep student: stages of 3x3 conv-BN-ReLU with max-pooling between.'
    """
    return {name: entry.description for name, entry in sorted(MODELS.items())}


def model_params(name: str) -> dict[str, object]:
    """Return the params the family ``name`` accepts, with their defaults.

    Example:
        >>> model_params("cifar_resnet")
        {'depth': 20, 'width': 16}
    """
    return dict(_entry(name).defaults)


def optional_params(name: str) -> tuple[str, ...]:
    """The optional params of family ``name`` (accepted, default None, not in model_params).

    Example:
        >>> optional_params("fitnet")
        ('channels',)
    """
    return _entry(name).optional


def check_params(name: str, params: dict[str, Any]) -> None:
    """Raise :class:`ModelError` if ``params`` has a key the family ``name`` does not accept.

    Example:
        >>> check_params("fitnet", {"widths": (8, 16)})   # fine
    """
    entry = _entry(name)
    accepted = [*entry.defaults, *entry.optional]
    for key in params:
        if key not in accepted:
            raise ModelError(
                f"model '{name}' has no param '{key}'{_did_you_mean(key, accepted)}",
                hint=f"accepted params: {', '.join(accepted) or '(none)'}",
            )


def normalize_input_size(input_size: Any) -> tuple[int, int]:
    """``8`` -> ``(8, 8)``; ``(28, 28)`` / ``[28, 28]`` -> ``(28, 28)``; anything else -> ModelError.

    Example:
        >>> normalize_input_size(8)
        (8, 8)
    """
    size = (input_size, input_size) if is_int(input_size) else input_size
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(is_int(s) and s >= 1 for s in size)):
        raise ModelError(f"input_size must be a positive int or (height, width), got {input_size!r}",
                         hint="e.g. input_size: 32 or input_size: [28, 28]")
    return int(size[0]), int(size[1])


def is_int(value: Any) -> bool:
    """True for Python/numpy integers, False for bools and floats.

    Example:
        >>> is_int(3), is_int(True), is_int(3.0)
        (True, False, False)
    """
    # numbers.Integral also admits numpy integers (shapes read from arrays); bools are rejected.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(model: str, param: str, value: Any, minimum: int = 1) -> int:
    """Validate that a factory param is an int >= ``minimum`` (bools rejected) and return it.

    Example:
        >>> check_int("teacher_cnn", "width", 32)
        32
    """
    if not is_int(value) or value < minimum:
        raise ModelError(f"model '{model}': param '{param}' must be an integer >= {minimum}, "
                         f"got {value!r}", hint=f"fix '{param}' in the recipe's model params")
    return int(value)


def create_model(name: str, *, in_channels: int, num_classes: int,
                 input_size: int | tuple[int, int], **params: Any) -> nn.Module:
    """Build a fresh (randomly initialised, train-mode) model of the family ``name``.

    Unknown names and params raise :class:`ModelError` with the closest valid spelling; invalid
    values (e.g. a ResNet depth that is not 6n+2) raise it from the factory.

    Example:
        >>> m = create_model("fitnet", in_channels=1, num_classes=10, input_size=8)
        >>> m(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    entry = _entry(name)
    check_params(name, params)
    in_channels = check_int(name, "in_channels", in_channels)
    num_classes = check_int(name, "num_classes", num_classes)
    size = normalize_input_size(input_size)
    return entry.factory(in_channels, num_classes, size, **params)

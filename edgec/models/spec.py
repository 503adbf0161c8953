"""``ModelSpec``: everything needed to rebuild a model's architecture, as plain JSON-able data.

A spec names a model (a registered family, or an external source: ``torchvision:NAME``,
``timm:NAME``, ``python:package.module:function``; see :mod:`edgec.models.sources`), its params, and
the data shape it was built for. It is what
model files carry (so loading never unpickles code), what stage keys hash, and what recipes
describe. On construction the params are checked against the family and completed with its
defaults, so a stored spec keeps meaning the same architecture even if a default changes later
(an external model's params are passed to its constructor as given); tuples become lists, so a spec equals itself after a JSON round trip.

Example:
    >>> spec = ModelSpec("fitnet", {"widths": [16, 32, 64]}, in_channels=3, num_classes=10,
    ...                  input_size=(32, 32))
    >>> model = spec.build()
    >>> ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from torch import nn

from edgec.errors import ModelError
from edgec.models import sources
from edgec.models.registry import check_int, check_params, model_params, normalize_input_size, optional_params
from edgec.models.structure import apply_structure

SPEC_VERSION = 1
_FIELDS = ("name", "params", "in_channels", "num_classes", "input_size")


def _json_normalized(name: str, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(params, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model '{name}': params must be JSON values (numbers, strings, lists), "
                         f"got {params!r}", hint="write params as plain YAML/JSON values") from exc


@dataclass
class ModelSpec:
    """A model (registered family or external source) + params + input description (see the module docstring).

    Example:
        >>> ModelSpec("teacher_cnn", {}, in_channels=1, num_classes=10, input_size=8).input_size
        (8, 8)
    """

    name: str
    params: dict[str, Any]
    in_channels: int
    num_classes: int
    input_size: tuple[int, int]
    # Pruned external models: per-module shapes (edgec.models.structure); None = as built.
    structure: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.params, dict):
            raise ModelError(f"model params must be a mapping, got {self.params!r}")
        if self.structure is not None:
            if not isinstance(self.structure, dict):
                raise ModelError(f"model structure must be a mapping, got {self.structure!r}")
            self.structure = _json_normalized(self.name, self.structure)
        self.in_channels = check_int(self.name, "in_channels", self.in_channels)
        self.num_classes = check_int(self.name, "num_classes", self.num_classes)
        self.input_size = normalize_input_size(self.input_size)
        if sources.is_external(self.name):
            try:
                sources.check_name(self.name)
            except ValueError as exc:
                raise ModelError(str(exc)) from None
            self.params = _json_normalized(self.name, self.params)
            return
        check_params(self.name, self.params)   # also rejects unknown names
        # An unset optional param (e.g. channels=None) is dropped, so the spec (and the stage keys
        # hashed from it) of an unpruned model is the same whether or not it was written out.
        optional = optional_params(self.name)
        given = {k: v for k, v in self.params.items() if not (k in optional and v is None)}
        self.params = _json_normalized(self.name, {**model_params(self.name), **given})

    def build(self) -> nn.Module:
        """Build a fresh, randomly initialised model of this spec.

        Example:
            >>> ModelSpec("cifar_resnet", {"depth": 32}, 3, 10, (32, 32)).build()
        """
        model = sources.build_model(self.name, in_channels=self.in_channels, num_classes=self.num_classes,
                                    input_size=self.input_size, params=self.params)
        return model if self.structure is None else apply_structure(model, self.structure)

    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one input sample, e.g. for :func:`count_flops` or ONNX export.

        Example:
            >>> ModelSpec("fitnet", {}, 1, 10, 8).input_shape()
            (1, 8, 8)
        """
        return (self.in_channels, *self.input_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (with a format ``version``).

        Example:
            >>> json.dumps(spec.to_dict())
        """
        return {"version": SPEC_VERSION, "name": self.name, "params": dict(self.params),
                "in_channels": self.in_channels, "num_classes": self.num_classes,
                "input_size": list(self.input_size),
                **({} if self.structure is None else {"structure": self.structure})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`; a malformed dict raises :class:`ModelError`.

        Example:
            >>> ModelSpec.from_dict({"name": "fitnet", "params": {}, "in_channels": 1,
            ...                      "num_classes": 10, "input_size": [8, 8]})
        """
        if not isinstance(d, dict):
            raise ModelError(f"a model spec must be a mapping, got {type(d).__name__}")
        version = d.get("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise ModelError(f"model spec version {version!r} is not supported "
                             f"(this edgec reads version {SPEC_VERSION})",
                             hint="load it with the edgec version that wrote it, or re-export it")
        missing = [k for k in _FIELDS if k not in d]
        unknown = [k for k in d if k not in (*_FIELDS, "version", "structure")]
        if missing or unknown:
            raise ModelError(f"malformed model spec: missing {missing}, unknown {unknown}",
                             hint=f"a spec has exactly the keys {list(_FIELDS)}")
        return cls(name=d["name"], params=d["params"], in_channels=d["in_channels"],
                   num_classes=d["num_classes"], input_size=d["input_size"], structure=d.get("structure"))

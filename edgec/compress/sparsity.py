"""Fine-grained weight sparsity: unstructured and N:M (2:4) masks, kept through fine-tuning.

Masks are boolean tensors shaped like a layer's weight (True = keep), by module name, for the
Conv2d and Linear layers. They come from per-weight scores:

- ``"magnitude"``: ``|w|``;
- ``"taylor"``: ``|w * mean_b dC_b/dw|``, the first-order change of the loss over a few batches
  when ``w`` is set to zero (the weight-level analogue of Molchanov et al.'s criterion).

**N:M along the input dimension** is the layout of NVIDIA's sparse tensor cores and TensorRT's
sparse-weights mode (TensorRT developer guide, "Structured Sparsity"): for a conv weight
``[K, C, R, S]`` with ``C % 4 == 0``, *for each output channel k and each kernel position (r, s),
every four consecutive input channels c hold at most two non-zeros*; a Linear ``[out, in]`` is the
R = S = 1 case. Layers whose input dimension is not a multiple of M (e.g. a first conv on 1- or
3-channel images) cannot take the pattern and are left dense (:func:`nm_masks` skips them).

**During fine-tuning** :func:`keep_masks` holds the masks with two hooks per layer: a gradient
hook zeroes the masked entries' gradients (so SGD/Adam/AdamW, weight decay included, never move
them off zero) and a forward pre-hook multiplies the weight by its mask before every forward (so
even an optimizer with stale momentum cannot leak a non-zero into the next step). The model's
parameters and state-dict keys are unchanged, so it trains with :func:`edgec.train.fit` and saves
with :func:`edgec.models.save_model` as is.

**Saving**: masks are *recomputed from zeros* (:func:`masks_from_zeros`), not stored as extra
tensors: every masked weight is exactly 0.0, and a model file must hold exactly the tensors of
``spec.build()``. :func:`sparsity_metadata` gives a small ``{str: str}`` header entry (pattern and
per-layer sparsity) to pass to ``save_model(..., metadata=...)`` so the engine stage knows to turn
on TensorRT's sparse-weights flag. BN folding scales whole output channels, so zeros stay zeros.

Example:
    >>> masks = nm_masks(weight_scores(model))             # 2:4 on every eligible layer
    >>> with keep_masks(model, masks):
    ...     fit(model, train, val, TrainConfig(epochs=2))
    >>> verify_nm(model)                                    # {'features.block1.conv2': True, ...}
    >>> save_model(model, spec, "sparse.safetensors", metadata=sparsity_metadata(model, "2:4"))
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from edgec.errors import RecipeError
from edgec.registry import Registry
from edgec.train import cross_entropy_loss

METHODS = ("magnitude", "taylor")
_METHOD_NAMES: Registry[str] = Registry("sparsity method")
for _name in METHODS:
    _METHOD_NAMES.register(_name, _name)


def sparsifiable_layers(model: nn.Module, exclude: Iterable[str] = ()) -> dict[str, nn.Module]:
    """The Conv2d and Linear layers by module name, minus ``exclude``.

    Example:
        >>> list(sparsifiable_layers(model, exclude=["classifier.out"]))[:1]
        ['features.block1.conv1']
    """
    skip = set(exclude)
    return {n: m for n, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and n not in skip}


def check_sparsity(sparsity: Any) -> float:
    """Return ``sparsity`` if it is a fraction in [0, 1), else raise :class:`RecipeError`.

    Example:
        >>> check_sparsity(0.9)
        0.9
    """
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) \
            or not 0 <= sparsity < 1:
        raise RecipeError(f"sparsity must be a fraction in [0, 1), got {sparsity!r}",
                          hint="e.g. sparsity: 0.8 (80% of the weights set to zero)")
    return float(sparsity)


def weight_scores(model: nn.Module, method: str = "magnitude", batches: Iterable | None = None,
                  loss_fn: Any = None, exclude: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Importance of every weight (higher = keep), by layer name; see the module docstring.

    ``batches`` of ``(x, y)`` tensors (on the model's device) and ``loss_fn(model, x, y)``
    (default cross-entropy) are needed for ``"taylor"``.

    Example:
        >>> scores = weight_scores(model, "taylor", batches=[(x, y)])
    """
    if method not in METHODS:
        raise _METHOD_NAMES.unknown(method)
    layers = sparsifiable_layers(model, exclude)
    if method == "magnitude":
        return {n: m.weight.detach().abs() for n, m in layers.items()}
    batches = list(batches or [])
    if not batches:
        raise RecipeError("taylor weight scores need data", hint="pass batches=[(x, y), ...]")
    loss_fn = loss_fn or cross_entropy_loss
    weights = [m.weight for m in layers.values()]
    sums = [torch.zeros_like(w) for w in weights]
    was_training = model.training
    model.eval()
    try:
        for x, y in batches:
            grads = torch.autograd.grad(loss_fn(model, x, y), weights)
            for s, g in zip(sums, grads):
                s += g
    finally:
        model.train(was_training)
    return {n: (w.detach() * s / len(batches)).abs() for n, w, s in zip(layers, weights, sums)}


def unstructured_masks(scores: dict[str, torch.Tensor], sparsity: float,
                       scope: str = "layer") -> dict[str, torch.Tensor]:
    """Keep the highest scores; zero ``sparsity`` of the weights in each layer (``"layer"``) or
    of all of them together (``"global"``: some layers end sparser than others).

    Example:
        >>> masks = unstructured_masks(weight_scores(model), 0.8)
    """
    sparsity = check_sparsity(sparsity)
    if scope not in ("layer", "global"):
        raise RecipeError(f"unknown sparsity scope {scope!r}", hint="use 'layer' or 'global'")
    if scope == "global":
        flat = torch.cat([s.flatten().float().cpu() for s in scores.values()])
        k = int(round(sparsity * flat.numel()))
        # The k-th smallest score is the threshold; ties are broken by position via argsort.
        order = torch.argsort(flat, stable=True)
        keep = torch.ones_like(flat, dtype=torch.bool)
        keep[order[:k]] = False
        out, start = {}, 0
        for name, s in scores.items():
            out[name] = keep[start:start + s.numel()].view_as(s).to(s.device)
            start += s.numel()
        return out
    out = {}
    for name, s in scores.items():
        k = int(round(sparsity * s.numel()))
        keep = torch.ones(s.numel(), dtype=torch.bool, device=s.device)
        keep[torch.argsort(s.flatten(), stable=True)[:k]] = False
        out[name] = keep.view_as(s)
    return out


def _groups_view(t: torch.Tensor, m: int) -> torch.Tensor:
    """(O, I, kh, kw) or (O, I) -> (O, kh, kw, I/m, m): groups of m consecutive input channels."""
    t = t.permute(0, 2, 3, 1) if t.dim() == 4 else t
    return t.reshape(*t.shape[:-1], t.shape[-1] // m, m)


def _ungroup(g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    t = g.reshape(*g.shape[:-2], g.shape[-2] * g.shape[-1])
    return t.permute(0, 3, 1, 2).contiguous() if len(shape) == 4 else t


def _check_nm(n: int, m: int) -> None:
    if not (isinstance(n, int) and isinstance(m, int) and 0 < n < m):
        raise RecipeError(f"an N:M pattern needs integers 0 < N < M, got {n}:{m}",
                          hint="use 2:4 (NVIDIA sparse tensor cores)")


def nm_masks(scores: dict[str, torch.Tensor], n: int = 2, m: int = 4) -> dict[str, torch.Tensor]:
    """Keep the ``n`` highest scores in every group of ``m`` consecutive input channels.

    Layers whose input dimension is not a multiple of ``m`` are left out (they stay dense).

    Example:
        >>> masks = nm_masks(weight_scores(model), 2, 4)
    """
    _check_nm(n, m)
    out = {}
    for name, s in scores.items():
        if s.dim() not in (2, 4) or s.shape[1] % m:
            continue
        groups = _groups_view(s, m)                              # (..., I/m, m)
        top = groups.topk(n, dim=-1).indices
        keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
        out[name] = _ungroup(keep, s.shape)
    return out


def check_nm(weight: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """True if every group of ``m`` consecutive input-channel weights has at most ``n`` non-zeros
    (TensorRT's check for a [K, C, R, S] conv or [out, in] Linear weight; C % m must be 0).

    Example:
        >>> check_nm(torch.tensor([[1.0, 0.0, 2.0, 0.0]]))
        True
    """
    _check_nm(n, m)
    if weight.dim() not in (2, 4) or weight.shape[1] % m:
        return False
    return bool((_groups_view(weight.detach(), m).ne(0).sum(dim=-1) <= n).all())


def verify_nm(model: nn.Module, n: int = 2, m: int = 4,
              exclude: Iterable[str] = ()) -> dict[str, bool]:
    """:func:`check_nm` for every eligible layer (input dimension a multiple of ``m``).

    Example:
        >>> all(verify_nm(model).values())
        True
    """
    return {name: check_nm(mod.weight, n, m) for name, mod in sparsifiable_layers(model, exclude).items()
            if mod.weight.shape[1] % m == 0}


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Set the masked-out weights to exactly zero, in place.

    Example:
        >>> apply_masks(model, masks)
    """
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, mask in masks.items():
            w = modules[name].weight
            w.mul_(mask.to(device=w.device, dtype=w.dtype))


class MaskKeeper:
    """Keeps masked weights at zero while the model trains; ``remove()`` (or leaving the ``with``
    block) takes the hooks off and leaves the zeros in place. See :func:`keep_masks`."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]):
        modules = dict(model.named_modules())
        self.handles: list[Any] = []
        apply_masks(model, masks)
        for name, mask in masks.items():
            mod = modules[name]
            m = mask.to(device=mod.weight.device, dtype=mod.weight.dtype)
            self.handles.append(mod.weight.register_hook(lambda g, m=m: g * m))
            self.handles.append(mod.register_forward_pre_hook(self._reapply(m)))

    @staticmethod
    def _reapply(mask: torch.Tensor) -> Any:
        def hook(module: nn.Module, _inputs: object) -> None:   # None: the inputs stay as they are
            module.weight.data.mul_(mask)
        return hook

    def remove(self) -> None:
        """Take the hooks off (the weights keep their zeros)."""
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def __enter__(self) -> MaskKeeper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def keep_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> MaskKeeper:
    """Zero the masked weights now and keep them zero through training (gradient + forward hooks).

    Example:
        >>> with keep_masks(model, nm_masks(weight_scores(model))):
        ...     fit(model, train, val, TrainConfig(epochs=1))
    """
    return MaskKeeper(model, masks)


def masks_from_zeros(model: nn.Module, exclude: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Recover masks from a saved sparse model: True where the weight is non-zero.

    Example:
        >>> model, spec = load_model("sparse.safetensors"); masks = masks_from_zeros(model)
    """
    return {n: m.weight.detach().ne(0) for n, m in sparsifiable_layers(model, exclude).items()}


def sparsity_report(model: nn.Module, exclude: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Zeros, total and sparsity of each Conv2d/Linear weight, plus ``"total"`` over all of them.

    Example:
        >>> sparsity_report(model)["total"]["sparsity"]
        0.5
    """
    out: dict[str, dict[str, Any]] = {}
    zeros = total = 0
    for name, mod in sparsifiable_layers(model, exclude).items():
        z, t = int(mod.weight.detach().eq(0).sum()), mod.weight.numel()
        out[name] = {"zeros": z, "total": t, "sparsity": z / t}
        zeros, total = zeros + z, total + t
    out["total"] = {"zeros": zeros, "total": total, "sparsity": zeros / total if total else 0.0}
    return out


def sparsity_metadata(model: nn.Module, pattern: str) -> dict[str, str]:
    """A model-file header entry ``{"edgec_sparsity": JSON}`` with the pattern ("2:4" or
    "unstructured") and per-layer sparsity, for ``save_model(..., metadata=...)``.

    Example:
        >>> save_model(model, spec, "m.safetensors", metadata=sparsity_metadata(model, "2:4"))
    """
    layers = {k: round(v["sparsity"], 6) for k, v in sparsity_report(model).items()}
    return {"edgec_sparsity": json.dumps({"pattern": pattern, "masks": "recomputed from zeros",
                                          "sparsity": layers}, sort_keys=True)}

"""Intermediate features for distillation: layers by name, hooks that capture them, regressors.

FitNets (Romero et al., arXiv 1412.6550) and multi-layer feature distillation both compare a
teacher's hidden layer (the *hint*) with a student's (the *guided* layer). Layers are named as in
``model.named_modules()`` (``features.block2``); their outputs are read with forward hooks, so no
model needs to know it is being distilled, and the student that comes out is unchanged.

Example:
    >>> feats, logits = capture(teacher, x, ["features.block2"])      # logits: (B, K)
    >>> feats, _ = capture(student, x, ["features.stage2"], stop=True)  # forward stops there
    >>> reg = make_regressor(feats_student_shape, feats_teacher_shape, relu=True)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from edgec.errors import ModelError, RecipeError
from edgec.registry import did_you_mean


class _StopForward(Exception):
    """Raised by a hook once every requested layer has run: the rest of the forward is skipped."""


def find_layer(model: nn.Module, name: str, role: str) -> nn.Module:
    """The submodule ``name`` of ``model``; a :class:`RecipeError` naming the closest ones if absent.

    ``role`` says what the layer is for ("teacher hint layer", "student guided layer").

    Example:
        >>> find_layer(teacher, "features.block2", "teacher hint layer")
        Sequential(...)
    """
    modules = dict(model.named_modules())
    modules.pop("", None)  # the model itself: its output is the logits, not a feature map
    if isinstance(name, str) and name in modules:
        return modules[name]
    valid = list(modules)
    shown = valid if len(valid) <= 40 else valid[:40] + [f"... ({len(valid) - 40} more)"]
    hint = did_you_mean(name, valid) + f"valid module names: {', '.join(shown) or '(none)'}"
    raise RecipeError(f"{role} {name!r} is not a module of {type(model).__name__}", hint=hint)


def capture(model: nn.Module, x: torch.Tensor, names: Sequence[str], *,
            stop: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Run ``model(x)`` and return (``{name: that module's output}``, logits).

    With ``stop=True`` the forward ends as soon as every named module has run and the logits are
    None: FitNets' hint stage never runs (or updates BatchNorm statistics of) the layers after the
    guided layer, and the teacher stops at its hint.

    Example:
        >>> feats, _ = capture(student, torch.zeros(2, 1, 8, 8), ["features.stage2"], stop=True)
        >>> feats["features.stage2"].shape
        torch.Size([2, 16, 2, 2])
    """
    found: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            if not torch.is_tensor(output):
                raise ModelError(f"layer {name!r} of {type(model).__name__} outputs a "
                                 f"{type(output).__name__}, not a tensor",
                                 hint="choose a module that outputs one feature map (e.g. a block)")
            found[name] = output
            if stop and len(found) == len(names):
                raise _StopForward
        return hook

    handles = [find_layer(model, n, "layer").register_forward_hook(hook_for(n)) for n in names]
    logits = None
    try:
        logits = model(x)
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in names if n not in found]
    if missing:
        raise ModelError(f"layers {missing} of {type(model).__name__} did not run in its forward",
                         hint="choose modules that the model's forward() calls")
    return found, logits


def params_up_to(model: nn.Module, layer: str, sample: torch.Tensor) -> list[nn.Parameter]:
    """The trainable parameters that ``layer``'s output depends on, in ``model.parameters()`` order.

    Found by autograd on ``sample`` (so skip connections and any module order are handled): these
    are FitNets' W_Guided, "the FitNet parameters from the first layer up to the guided layer".
    Runs in eval mode: BatchNorm statistics are not touched.

    Example:
        >>> len(params_up_to(student, "features.stage1", torch.zeros(2, 1, 8, 8)))
        9
    """
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            out = capture(model, sample, [layer], stop=True)[0][layer]  # (B, C, H, W)
            grads = torch.autograd.grad(out.sum(), params, allow_unused=True)
    finally:
        model.train(was_training)
    return [p for p, g in zip(params, grads) if g is not None]


def regressor_kernel(guided: Sequence[int], hint: Sequence[int]) -> tuple[int, int]:
    """FitNets' convolutional regressor kernel (Section 2.2): ``k_i = N_g,i - N_h,i + 1``, so a
    valid (unpadded) convolution maps the guided map's N_g,1 x N_g,2 onto the hint's N_h,1 x N_h,2.

    ``guided`` and ``hint`` are (H, W). Equal sizes give 1x1. A guided map smaller than the hint
    is a :class:`RecipeError` (a valid convolution cannot grow a map).

    Example:
        >>> regressor_kernel((14, 14), (7, 7))
        (8, 8)
    """
    if any(g < h for g, h in zip(guided, hint)):
        raise RecipeError(f"the student's guided layer gives {tuple(guided)} feature maps, smaller "
                          f"than the teacher's hint layer {tuple(hint)}",
                          hint="choose an earlier (larger) guided layer or a later (smaller) hint "
                               "layer: FitNets' regressor is a valid convolution, it can only shrink")
    return guided[0] - hint[0] + 1, guided[1] - hint[1] + 1


def make_regressor(guided_shape: Sequence[int], hint_shape: Sequence[int], relu: bool) -> nn.Module:
    """A module mapping the guided layer's output (B, *guided_shape) to (B, *hint_shape).

    Feature maps (C, H, W): a convolution with :func:`regressor_kernel` (1x1 when the spatial
    sizes match), as in the paper; a guided map smaller than the hint is resized to it (bilinear)
    and mapped by a 1x1 convolution; vectors (D,): a Linear layer. ``relu`` appends a ReLU: "u_h and
    r must be the same non-linearity" (Section 2.2), and our hints are ReLU outputs.

    Example:
        >>> make_regressor((8, 4, 4), (64, 2, 2), relu=True)
        Sequential((conv): Conv2d(8, 64, kernel_size=(3, 3), stride=(1, 1)), (relu): ReLU())
    """
    g, h = tuple(guided_shape), tuple(hint_shape)
    if len(g) == 3 and len(h) == 3 and all(gi >= hi for gi, hi in zip(g[1:], h[1:])):
        conv = nn.Conv2d(g[0], h[0], regressor_kernel(g[1:], h[1:]))  # valid: no padding
        layers: list[tuple[str, nn.Module]] = [("conv", conv)]
    elif len(g) == 3 and len(h) == 3:
        # A guided map smaller than the hint (common between unrelated architectures, e.g. a
        # MobileNet student under a ResNet teacher): a valid convolution cannot grow it, so it is
        # resized to the hint's size (bilinear) and mapped by a 1x1 convolution.
        layers = [("resize", nn.Upsample(size=h[1:], mode="bilinear", align_corners=False)),
                  ("conv", nn.Conv2d(g[0], h[0], 1))]
    elif len(g) == 1 and len(h) == 1:
        layers = [("linear", nn.Linear(g[0], h[0]))]
    else:
        raise RecipeError(f"cannot regress a student layer of shape {g} onto a teacher layer of "
                          f"shape {h}",
                          hint="pair layers of the same kind: two conv feature maps (C, H, W) or "
                               "two vectors (D,)")
    if relu:
        layers.append(("relu", nn.ReLU()))
    return nn.Sequential(OrderedDict(layers))


def hint_loss(prediction: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
    """FitNets' Eq. (3) per example, ``1/2 ||u_h(x) - r(v_g(x))||^2``, averaged over the batch.

    Both tensors are (B, ...); the squared error is summed over everything but the batch axis.
    The hint is a target: no gradient flows into the teacher.

    Example:
        >>> hint_loss(torch.zeros(2, 3), torch.ones(2, 3))
        tensor(1.5000)
    """
    if prediction.shape != hint.shape:
        raise ModelError(f"the regressor gives {tuple(prediction.shape)} but the hint is "
                         f"{tuple(hint.shape)}", hint="this is a bug in edgec's regressor sizing")
    diff = (prediction - hint.detach()).flatten(1)  # (B, C*H*W)
    return 0.5 * diff.pow(2).sum(dim=1).mean()

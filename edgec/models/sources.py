"""Where a model comes from: edgec's own families, torchvision, timm, or the user's own code.

A recipe's ``model:`` is one of

- a built-in family name (``teacher_cnn``, ``fitnet``, ``cifar_resnet``: :mod:`edgec.models.registry`);
- ``torchvision:NAME``: a torchvision classification model (``torchvision.models.get_model``);
- ``timm:NAME``: a timm model (``timm.create_model``);
- ``python:package.module:function``: a factory in the user's own code.

In every case ``num_classes`` comes from the data and the recipe's ``params`` go to the constructor.
Input channels: timm takes ``in_chans``; for torchvision the stem convolution (the first 3-channel
conv) is replaced when the data has another channel count; a ``python:`` factory receives
``in_channels`` and ``input_size`` only when its signature names them.

**The ``python:`` form runs the user's code** (it imports their module and calls their function, as
their own training script would). edgec accepts only that explicit form: a recipe's text is never
evaluated, and no other name imports anything. Modules are found in the folders given to
:func:`add_search_dir` (``load_recipe`` adds the recipe file's folder), then on ``sys.path``, then in
the current directory (as ``python -m`` would).

Weights (:func:`load_weights`): a user file (``.safetensors`` or a ``.pt`` state dict read with
``weights_only=True``) or the library's own pretrained weights (:func:`pretrained_state_dict`; it
needs the machine to download them, or the library's cache). Two adaptations are made, and reported:
a stem conv trained on 3 channels is summed/tiled onto the data's channel count (as timm's
``adapt_input_conv`` does), and a classifier trained on another class count is left freshly
initialised (to be trained) when the caller allows it. Everything else must fit exactly.

torchvision and timm are in the ``vision`` extra and imported only when such a model is used; the
torchvision wheel must match the installed torch (both CPU builds, both CUDA builds of one version,
or NVIDIA's Jetson wheels).

Example:
    >>> model = build_model("python:my_models:small_cnn", in_channels=1, num_classes=10,
    ...                     input_size=(28, 28), params={"width": 32})
    >>> model = build_model("torchvision:resnet18", in_channels=1, num_classes=10,
    ...                     input_size=(32, 32), params={})
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgec.errors import ModelError
from edgec.model_names import (KINDS, PYTHON_NAME, SEARCH_DIRS, add_search_dir, check_name,  # noqa: F401 (re-exported)
                               is_external, kind)
from edgec.registry import did_you_mean

_VISION_HINT = ('install the vision extra: pip install "edgec[vision]", with a torchvision built for the '
                "installed torch (the PyTorch CPU or CUDA index, or NVIDIA's Jetson wheels)")
_CHECKED: set[str] = set()  # external specs whose output shape was already checked in this process


@contextmanager
def _search_path() -> Iterator[None]:
    first = [d for d in SEARCH_DIRS if d not in sys.path]
    last = [d for d in (str(Path.cwd()),) if d not in sys.path and d not in first]
    sys.path[:0] = first
    sys.path.extend(last)
    added = first + last
    try:
        yield
    finally:
        for d in added:
            if d in sys.path:
                sys.path.remove(d)


def _import_factory(name: str) -> Callable[..., Any]:
    m = PYTHON_NAME.match(name)
    if m is None:
        raise ModelError(f"invalid model name {name!r}", hint="write python:package.module:function")
    module_name, attr = m.groups()
    with _search_path():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and not module_name.startswith(exc.name) and not exc.name.startswith(module_name):
                raise ModelError(f"model {name!r}: importing {module_name} failed: {exc}",
                                 hint=f"install the package {exc.name!r} that your module imports") from exc
            raise ModelError(f"model {name!r}: no module named {module_name!r} on the search path",
                             hint="run edgec from the folder that holds your package, add that folder to "
                                  "PYTHONPATH, or put the recipe file next to it (its folder is searched)") from exc
        except Exception as exc:  # the user's module failed while importing: say so, with its error
            raise ModelError(f"model {name!r}: importing {module_name} raised {type(exc).__name__}: {exc}",
                             hint="fix the error in your module (run `python -c 'import "
                                  f"{module_name}'` to see the traceback)") from exc
    factory = getattr(module, attr, None)
    if factory is None:
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise ModelError(f"model {name!r}: module {module_name} has no attribute {attr!r}",
                         hint=f"{did_you_mean(attr, public)}callables in {module_name}: {', '.join(public[:20]) or '(none)'}")
    if not callable(factory):
        raise ModelError(f"model {name!r}: {module_name}.{attr} is a {type(factory).__name__}, not a function",
                         hint="point at a function (or class) that returns an nn.Module")
    return factory


def source_digest(name: str) -> str | None:
    """sha256 of a ``python:`` model's module file (None for other sources), so editing the user's
    model code invalidates the build's cached training stages."""
    if kind(name) != "python":
        return None
    module = sys.modules.get(PYTHON_NAME.match(name).group(1)) if PYTHON_NAME.match(name) else None
    if module is None:
        _import_factory(name)
        module = sys.modules[PYTHON_NAME.match(name).group(1)]
    path = getattr(module, "__file__", None)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path and Path(path).is_file() else None


def _call_python(name: str, in_channels: int, num_classes: int, input_size: tuple[int, int],
                 params: dict[str, Any]) -> Any:
    factory = _import_factory(name)
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepted = {}
    fixed = {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size}
    clash = [k for k in fixed if k in params]
    if clash:
        raise ModelError(f"model {name!r}: params {clash} are set by edgec from the data",
                         hint="remove them from the recipe's params (num_classes, in_channels and input_size "
                              "come from the dataset)")
    if "num_classes" not in accepted and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        raise ModelError(f"model {name!r}: the factory does not take num_classes",
                         hint="give it a num_classes parameter: edgec sets the class count from the data")
    kwargs = {"num_classes": num_classes, **{k: v for k, v in fixed.items() if k != "num_classes" and k in accepted},
              **params}
    try:
        return factory(**kwargs)
    except Exception as exc:
        raise ModelError(f"model {name!r}: calling {factory.__name__}({', '.join(kwargs)}) raised "
                         f"{type(exc).__name__}: {exc}",
                         hint="check the recipe's params against your factory's signature") from exc


def _library(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(f"{module} is not installed (or does not load: {exc})", hint=_VISION_HINT) from exc
    except RuntimeError as exc:  # e.g. "operator torchvision::nms does not exist": a CUDA torchvision on CPU torch
        raise ModelError(f"{module} does not load next to torch {torch.__version__}: {exc}",
                         hint="install the torchvision build made for this torch (same version and CPU/CUDA "
                              "flavour); " + _VISION_HINT) from exc


def _torchvision_names(tv: Any) -> list[str]:
    return sorted(tv.models.list_models(module=tv.models))  # classification models only


def _check_library_name(lib: str, model: str, names: list[str]) -> None:
    if model not in names:
        listing = "torchvision.models.list_models()" if lib == "torchvision" else "timm.list_models()"
        raise ModelError(f"unknown {lib} model {model!r}",
                         hint=f"{did_you_mean(model, names)}list the names with: python -c 'import {lib}; "
                              f"print({listing})'")


def _construct(lib: str, model: str, params: dict[str, Any], **fixed: Any) -> nn.Module:
    if lib == "torchvision":
        tv = _library("torchvision")
        _check_library_name("torchvision", model, _torchvision_names(tv))
        make = lambda: tv.models.get_model(model, **fixed, **params)  # noqa: E731
    else:
        timm = _library("timm")
        if not timm.is_model(model):
            _check_library_name("timm", model, timm.list_models())
        make = lambda: timm.create_model(model, **fixed, **params)  # noqa: E731
    try:
        return make()
    except TypeError as exc:
        raise ModelError(f"{lib}:{model}: bad params {params}: {exc}",
                         hint="params go to the model's constructor; check its signature") from exc


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The stem: the first ``Conv2d`` (in module order) that reads the image, or None."""
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            return name, mod
    return None


def _replace_stem(model: nn.Module, in_channels: int, source: str) -> None:
    found = first_conv(model)
    if found is None or found[1].in_channels == in_channels:
        return
    name, conv = found
    if conv.groups != 1:
        raise ModelError(f"{source}: cannot change the input channels of stem conv {name!r} (groups={conv.groups})",
                         hint="use 3-channel images (data.channels: 3)")
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode)
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def _check_output(model: nn.Module, name: str, in_channels: int, num_classes: int,
                  input_size: tuple[int, int]) -> None:
    key = f"{name}|{in_channels}|{num_classes}|{input_size}"
    if key in _CHECKED:
        return
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, in_channels, *input_size))
    except Exception as exc:
        raise ModelError(f"model {name!r} fails on inputs of shape (2, {in_channels}, {input_size[0]}, "
                         f"{input_size[1]}): {type(exc).__name__}: {exc}",
                         hint="check data.image_size / the model's minimum input size and its params") from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"model {name!r} returns {got} for a batch of 2; edgec needs classification logits "
                         f"of shape (batch, num_classes) = (2, {num_classes})",
                         hint="wrap the model so that forward() returns logits (e.g. turn off auxiliary outputs)")
    _CHECKED.add(key)


def build_model(name: str, *, in_channels: int, num_classes: int, input_size: tuple[int, int],
                params: dict[str, Any]) -> nn.Module:
    """A fresh, randomly initialised model from any source (see the module docstring).

    External models are checked once per process to return ``(batch, num_classes)`` logits on the
    data's input shape; problems raise :class:`ModelError` naming the model.
    """
    src = kind(name)
    if src == "builtin":
        from edgec.models.registry import create_model
        return create_model(name, in_channels=in_channels, num_classes=num_classes, input_size=input_size, **params)
    target = name.split(":", 1)[1]
    if src == "python":
        model = _call_python(name, in_channels, num_classes, input_size, params)
        if not isinstance(model, nn.Module):
            raise ModelError(f"model {name!r}: the factory returned a {type(model).__name__}, not a torch nn.Module",
                             hint="return the model object (an nn.Module) from your factory")
    elif src == "timm":
        model = _construct("timm", target, params, pretrained=False, num_classes=num_classes, in_chans=in_channels)
    else:
        model = _construct("torchvision", target, params, weights=None, num_classes=num_classes)
        _replace_stem(model, in_channels, name)
    _check_output(model, name, in_channels, num_classes, input_size)
    return model


def pretrained_state_dict(name: str, *, in_channels: int, num_classes: int,
                          params: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The library's own pretrained weights for ``name`` (downloaded, or from the library's cache).

    timm adapts them to ``num_classes``/``in_channels`` itself; torchvision's come with their
    original 1000-class head and RGB stem, which :func:`load_weights` adapts.
    """
    src, target = kind(name), name.split(":", 1)[-1]
    if src not in ("torchvision", "timm"):
        raise ModelError(f"model {name!r}: `pretrained: true` is for torchvision: and timm: models",
                         hint="give your own weights file with `weights: path.safetensors` (or a .pt state dict)")
    try:
        if src == "timm":
            model = _construct("timm", target, params, pretrained=True, num_classes=num_classes, in_chans=in_channels)
        else:
            model = _construct("torchvision", target, params, weights="DEFAULT")
    except ModelError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:  # URLError, HF hub offline errors, bad downloads
        raise ModelError(f"cannot get the pretrained weights of {name}: {type(exc).__name__}: {exc}",
                         hint="this machine may have no internet access: download them where you can "
                              "(the library caches them under ~/.cache/torch or ~/.cache/huggingface), "
                              "or save a state dict and give it as `weights: FILE`") from exc
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """timm's ``adapt_input_conv``: RGB filters summed for 1 channel; tiled and rescaled for more."""
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeat = -(-in_channels // weight.shape[1])
    return weight.repeat(1, repeat, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def _classifier_keys(model: nn.Module, num_classes: int) -> set[str]:
    """State-dict keys of the layer producing the logits: the last Linear (or 1x1 Conv) with
    ``num_classes`` outputs."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and mod.out_features == num_classes:
            last = name
        elif isinstance(mod, nn.Conv2d) and mod.out_channels == num_classes and mod.kernel_size == (1, 1):
            last = name
    if last is None:
        return set()
    return {f"{last}.weight", f"{last}.bias"}


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], *, source: str, num_classes: int,
                 allow_new_head: bool) -> list[str]:
    """Load ``state`` into ``model``; returns notes on what was adapted (empty = loaded as is).

    A stem conv with another input-channel count is adapted (:func:`_adapt_stem`); with
    ``allow_new_head`` a classifier of another class count stays freshly initialised. Any other
    missing key, unexpected key or shape difference raises :class:`ModelError` listing them.
    """
    own = model.state_dict()
    notes: list[str] = []
    state = dict(state)
    stem = first_conv(model)
    stem_key = f"{stem[0]}.weight" if stem else None
    if stem_key in state and state[stem_key].dim() == 4 and state[stem_key].shape[1] != own[stem_key].shape[1] \
            and state[stem_key].shape[0] == own[stem_key].shape[0]:
        notes.append(f"stem {stem[0]}: {state[stem_key].shape[1]}-channel filters adapted to "
                     f"{own[stem_key].shape[1]} channel(s)")
        state[stem_key] = _adapt_stem(state[stem_key], own[stem_key].shape[1])
    head = _classifier_keys(model, num_classes)
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    if allow_new_head and mismatched and set(mismatched) <= head:
        notes.append(f"classifier {sorted(head)[0].rsplit('.', 1)[0]}: the weights have "
                     f"{state[sorted(mismatched)[0]].shape[0]} classes, the data {num_classes}: "
                     "left freshly initialised (it is trained)")
        for k in mismatched:
            state[k] = own[k]
        mismatched = []
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            parts.append("shape mismatch: " + "; ".join(f"{k}: file {tuple(state[k].shape)} vs model "
                                                       f"{tuple(own[k].shape)}" for k in mismatched[:6]))
        if missing:
            parts.append(f"missing keys: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected[:6])}{' ...' if len(unexpected) > 6 else ''}")
        raise ModelError(f"weights from {source} do not fit the model: " + "; ".join(parts),
                         hint="set model/params to the architecture the weights were trained with"
                              + ("" if allow_new_head else " (and the same number of classes)"))
    model.load_state_dict(state, strict=True)
    return notes

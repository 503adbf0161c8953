"""Model files: one ``.safetensors`` file = weights + the :class:`ModelSpec` that rebuilds them.

Format: ``safetensors.torch.save_file(state_dict, path, metadata)`` where ``metadata`` (str -> str)
holds the spec as JSON under ``"edgec_model_spec"``, edgec's version under ``"edgec_version"``, and
any caller metadata. Loading parses the JSON, rebuilds the architecture from the registry and
loads the weights strictly. No pickle is involved, so opening a model file cannot run code.

User weights from elsewhere (``torch.save(model.state_dict())`` files, Hugging Face-style
``.safetensors``) come in through :func:`load_state_dict_file`, which uses
``torch.load(weights_only=True)`` for ``.pt``/``.pth``.

Example:
    >>> path = save_model(model, spec, "runs/digits/student.safetensors", {"stage": "distill"})
    >>> model, spec = load_model(path)
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

import edgec
from edgec.atomic import atomic_path
from edgec.errors import ModelError
from edgec.models.spec import ModelSpec

SPEC_KEY = "edgec_model_spec"
VERSION_KEY = "edgec_version"
_RESERVED = (SPEC_KEY, VERSION_KEY)
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
# Wrappers that training scripts commonly put around a state dict: {"state_dict": {...}, "epoch": 3}
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "weights")


def _plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share storage (tied weights, views) and non-contiguous
    # ones, so every entry becomes its own contiguous CPU copy.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def _compare(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> list[str]:
    """Differences between two state dicts, as readable lines (empty = they fit)."""
    problems = []
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected[:8])}"
                        f"{' ...' if len(unexpected) > 8 else ''}")
    shapes = [f"{k}: file {tuple(got[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in got and got[k].shape != v.shape]
    if shapes:
        problems.append(f"shape mismatch: {'; '.join(shapes[:8])}{' ...' if len(shapes) > 8 else ''}")
    return problems


def canonicalize_safetensors_header(path: str | Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys, in place.

    safetensors serialises the ``__metadata__`` map in hash order, which changes from process to
    process, so the same model saved twice gave different bytes (and different cache keys for every
    stage after it). Sorting keeps the header's length, so the tensor data and offsets are untouched.
    """
    with open(path, "r+b") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        raw = fh.read(n)
        header = json.loads(raw)
        canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        if len(canonical) > n:  # never happens for safetensors' compact JSON; refuse rather than corrupt
            raise ValueError(f"canonical safetensors header longer than the original ({len(canonical)} > {n})")
        fh.seek(8)
        fh.write(canonical + b" " * (n - len(canonical)))  # safetensors pads its header with spaces


def save_model(model: nn.Module, spec: ModelSpec, path: str | Path,
               metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s weights and ``spec`` to one ``.safetensors`` file, atomically.

    The weights must fit ``spec.build()`` exactly (checked before writing), so every file this
    writes can be loaded back. ``metadata`` is extra str -> str information kept in the header.

    Example:
        >>> save_model(model, ModelSpec("fitnet", {}, 1, 10, 8), "out/student.safetensors",
        ...            metadata={"dataset": "digits"})
        PosixPath('out/student.safetensors')
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ModelError(f"model files are .safetensors files, got '{path}'",
                         hint=f"save to '{path.with_suffix('.safetensors')}'")
    extra = dict(metadata or {})
    bad = [k for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ModelError(f"model file metadata must map str to str; bad entries: {bad}",
                         hint="convert values with str() or json.dumps()")
    clash = [k for k in extra if k in _RESERVED]
    if clash:
        raise ModelError(f"metadata keys {clash} are reserved by edgec", hint="rename them")
    tensors = _plain_state_dict(model)
    problems = _compare(spec.build().state_dict(), tensors)
    if problems:
        raise ModelError(f"model does not match its spec '{spec.name}' {spec.params}; "
                         + "; ".join(problems),
                         hint="save it with the spec it was built from (a model whose layers were "
                              "resized must be described by a spec that builds those sizes)")
    header = {**extra, SPEC_KEY: json.dumps(spec.to_dict(), sort_keys=True),
              VERSION_KEY: edgec.__version__}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=header)
        canonicalize_safetensors_header(tmp)
    return path


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise ModelError(f"model file not found: {path}", hint="check the path")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            # .clone(): own the memory instead of keeping the file mapped.
            tensors = {k: f.get_tensor(k).clone() for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot read {path}: not a complete safetensors file ({exc})",
                         hint="the file is corrupt or truncated; re-create it (e.g. re-run the "
                              "stage that wrote it)") from exc
    return tensors, meta


def load_model(path: str | Path) -> tuple[nn.Module, ModelSpec]:
    """Rebuild the model stored by :func:`save_model`; returns ``(model in eval mode, spec)``.

    Corrupt or truncated files, files without an edgec spec, and weights that do not fit the
    architecture (missing/unexpected keys, wrong shapes) raise :class:`ModelError`.

    Example:
        >>> model, spec = load_model("runs/digits/student.safetensors")
        >>> model(torch.zeros(1, *spec.input_shape())).shape
        torch.Size([1, 10])
    """
    path = Path(path)
    tensors, meta = _read_safetensors(path)
    if SPEC_KEY not in meta:
        raise ModelError(f"{path} is a safetensors file but not an edgec model file "
                         f"(no '{SPEC_KEY}' metadata)",
                         hint="for plain weights use load_state_dict_file() with create_model()")
    try:
        spec = ModelSpec.from_dict(json.loads(meta[SPEC_KEY]))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: the stored model spec is not valid JSON ({exc})",
                         hint="the file is corrupt; re-create it") from exc
    except ModelError as exc:
        raise ModelError(f"{path}: {exc.message}", hint=exc.hint) from exc
    model = spec.build()
    problems = _compare(model.state_dict(), tensors)
    if problems:
        raise ModelError(f"{path}: weights do not fit model '{spec.name}' {spec.params}; "
                         + "; ".join(problems),
                         hint="the file was written for a different architecture; re-create it")
    model.load_state_dict(tensors, strict=True)
    return model.eval(), spec


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ModelError(f"{path} does not hold a state dict (a mapping of names to tensors)",
                         hint="save weights with torch.save(model.state_dict(), path) or "
                              "safetensors.torch.save_file")
    # nn.DataParallel / DistributedDataParallel prefix every key with "module.".
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load user weights from ``.safetensors`` or ``.pt``/``.pth``/``.bin`` without unpickling code.

    ``.pt`` files go through ``torch.load(weights_only=True)``; a ``{"state_dict": ...}`` /
    ``{"model": ...}`` checkpoint wrapper and a DataParallel ``module.`` prefix are removed.

    Example:
        >>> model.load_state_dict(load_state_dict_file("teacher.pt"))
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}", hint="check the path")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _read_safetensors(path)[0]
    if suffix not in _TORCH_SUFFIXES:
        raise ModelError(f"unsupported weights file type '{path.suffix}': {path}",
                         hint="use a .safetensors file or a torch.save()d .pt/.pth state dict")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(f"{path} contains Python objects other than tensors, which edgec will not "
                         f"unpickle (it could run code)",
                         hint="in the script that made it, save torch.save(model.state_dict(), path) "
                              "instead of the whole model or optimizer objects") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: not a complete torch.save() file ({exc})",
                         hint="the file is corrupt or truncated; re-create it") from exc
    return _unwrap(obj, path)

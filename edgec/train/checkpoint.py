"""Training checkpoints: one ``checkpoint.pt`` per workdir, written atomically after each epoch.

The file holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(..., weights_only=True)`` (no pickled classes, no code runs on load). Because it is
replaced atomically, it is always the end of some completed epoch: a crash or Ctrl-C mid-epoch
leaves the previous one in place.

Layout (``FORMAT`` = "edgec.train.checkpoint/1")::

    {"format", "fingerprint", "resume_key", "config", "description", "torch_version",
     "epoch",                      # completed epochs, 1-based
     "model", "optimizer", "scheduler" (or None),
     "history", "best_state", "best_epoch", "best_val_accuracy",
     "world_size"}                 # processes that wrote it (information only: any number resumes)

Example:
    >>> ckpt = load_checkpoint(Path("runs/teacher/checkpoint.pt"), torch.device("cpu"))
    >>> ckpt["epoch"], ckpt["best_val_accuracy"]
    (10, 0.97)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgec.atomic import atomic_path
from edgec.errors import ArtifactError

FORMAT = "edgec.train.checkpoint/1"
CHECKPOINT_NAME = "checkpoint.pt"

StateDict = dict[str, Any]


def copy_state(model: nn.Module) -> StateDict:
    """A detached copy of ``model.state_dict()`` that later training steps cannot change."""
    return {k: v.detach().clone() if torch.is_tensor(v) else copy.deepcopy(v)
            for k, v in model.state_dict().items()}


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (see the module docstring) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "torch_version": str(torch.__version__), **payload}, tmp)


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any] | None:
    """Read the checkpoint at ``path`` (tensors mapped to ``device``); None if there is none.

    A file that exists but cannot be read as a checkpoint is an :class:`ArtifactError`: atomic
    writes never leave a half-written one, so it was changed by something else.
    """
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types (UnpicklingError, RuntimeError, EOFError)
        raise ArtifactError(f"cannot read the training checkpoint {path}: {exc}",
                            hint=f"delete {path} to train this stage from the start") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not an edgec training checkpoint ({FORMAT})",
                            hint=f"delete {path} to train this stage from the start")
    return ckpt


def state_matches(model: nn.Module, state: StateDict) -> bool:
    """True when ``state`` has exactly ``model``'s keys and tensor shapes (same architecture)."""
    own = model.state_dict()
    if own.keys() != state.keys():
        return False
    return all(not torch.is_tensor(v) or (torch.is_tensor(state[k]) and v.shape == state[k].shape)
               for k, v in own.items())

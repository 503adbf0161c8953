"""Transitional: edgec's engine backends now live in :mod:`edgec.backends` (one folder per backend).

Only :mod:`edgec.engine.kernels` is still here, until it moves to ``edgec/backends/kernels/``;
``resolve_backend`` and ``stage_config`` are re-exported for code not yet switched to
:mod:`edgec.backends`.
"""

from __future__ import annotations

from edgec.backends import cuda_device, resolve_backend, stage_config

__all__ = ["resolve_backend", "stage_config", "cuda_device"]

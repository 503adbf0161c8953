"""The one interface every runtime implements, and helpers that only talk to it.

``bench``, ``verify`` and ``gate`` see a :class:`Runner` and nothing else: numpy arrays in, numpy
arrays out, tensors described by :class:`TensorSpec`. A runtime-specific object (torch module, ORT
session, TensorRT context) never leaks through this interface.

This module imports numpy only, so ``import edgec.runtimes`` stays cheap and never touches
onnxruntime, tensorrt, pycuda or CUDA.

Example:
    >>> from edgec.runtimes import open_runner, accuracy
    >>> with open_runner("student.onnx") as r:          # doctest: +SKIP
    ...     print(r.describe()["providers"], accuracy(r, x_test, y_test))
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgec.errors import DataError, ModelError

__all__ = ["TensorSpec", "Runner", "predict", "accuracy", "prepare_feeds"]


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and numpy dtype name of one model input or output.

    A dimension is an ``int`` when fixed, a ``str`` when symbolic (``"batch"``) and ``None`` when
    unknown.

    Example:
        >>> TensorSpec("input", ("batch", 1, 28, 28), "float32").shape[0]
        'batch'
    """

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"name": "input", "shape": ["batch", 3], "dtype": "float32"}``."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


class Runner(ABC):
    """Loads one model in one runtime and runs it on numpy arrays.

    Subclasses set ``runtime``, ``inputs`` and ``outputs`` in ``__init__`` and implement
    :meth:`run` and :meth:`describe`. Use as a context manager so device memory is freed.

    Example:
        >>> with open_runner(model) as r:                 # doctest: +SKIP
        ...     logits = r.infer(np.zeros((4, 1, 28, 28), np.float32))
    """

    runtime: str = "unknown"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on named inputs; returns every output by name, in :attr:`outputs` order."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What ran: runtime, version, device, providers, threads... (recorded in results JSON)."""

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Single-input convenience: feed ``x`` to the first input, return the first output.

        Example:
            >>> runner.infer(images).argmax(1)            # doctest: +SKIP
        """
        if len(self.inputs) != 1:
            names = ", ".join(s.name for s in self.inputs)
            raise ModelError(
                f"infer() takes one input but this model has {len(self.inputs)} ({names})",
                hint="call run({name: array, ...}) with every input",
            )
        outputs = self.run({self.inputs[0].name: x})
        return next(iter(outputs.values()))

    def close(self) -> None:
        """Release the model and its memory. Safe to call twice."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}{list(s.shape)}" for s in self.inputs)
        return f"<{type(self).__name__} runtime={self.runtime} inputs=[{ins}]>"


def prepare_feeds(specs: list[TensorSpec], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check feed names against ``specs`` and return C-contiguous arrays of the expected dtype.

    Float arrays are cast to the model's float type (float64 data into a float32 model is the
    usual case; ORT would reject it). Any other dtype mismatch is an error rather than a silent,
    possibly lossy cast.

    Example:
        >>> specs = [TensorSpec("x", (None, 2), "float32")]
        >>> prepare_feeds(specs, {"x": np.ones((1, 2))})["x"].dtype
        dtype('float32')
    """
    wanted = {s.name for s in specs}
    missing = [s.name for s in specs if s.name not in feeds]
    extra = [n for n in feeds if n not in wanted]
    if missing or extra:
        raise ModelError(
            f"inputs do not match the model: missing {missing or 'none'}, "
            f"unexpected {extra or 'none'}",
            hint=f"the model's inputs are: {', '.join(sorted(wanted))}",
        )
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        arr = np.asarray(feeds[spec.name])
        target = _numpy_dtype(spec.dtype)
        if target is not None and arr.dtype != target:
            if arr.dtype.kind == "f" and target.kind == "f":
                arr = arr.astype(target)
            else:
                raise ModelError(
                    f"input '{spec.name}' has dtype {arr.dtype} but the model expects {spec.dtype}",
                    hint=f"convert it first, e.g. x.astype(np.{spec.dtype})",
                )
        out[spec.name] = np.ascontiguousarray(arr)
    return out


def _numpy_dtype(name: str) -> np.dtype | None:
    try:
        return np.dtype(name)
    except TypeError:  # "unknown", "bfloat16" and other names numpy does not know
        return None


def _fixed_batch(runner: Runner) -> int | None:
    """The model's batch size when its first input has a fixed one (static ONNX/TRT shapes)."""
    if not runner.inputs or not runner.inputs[0].shape:
        return None
    dim = runner.inputs[0].shape[0]
    return dim if isinstance(dim, int) and dim > 0 else None


def predict(runner: Runner, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run ``x`` (N, ...) through ``runner`` in batches; returns the first output, (N, classes).

    A model exported with a fixed batch dimension is fed batches of exactly that size: the last
    one is zero-padded and the padding's outputs dropped.

    Example:
        >>> logits = predict(runner, x_test, batch_size=128)   # doctest: +SKIP
        >>> logits.shape                                       # doctest: +SKIP
        (10000, 10)
    """
    x = np.asarray(x)
    if x.ndim == 0 or len(x) == 0:
        raise DataError("predict() got no samples",
                        hint="pass an array of shape (N, ...) with N >= 1")
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    fixed = _fixed_batch(runner)
    step = fixed or batch_size
    chunks = []
    for start in range(0, len(x), step):
        batch = x[start : start + step]
        n = len(batch)
        if fixed and n < fixed:
            pad = np.zeros((fixed - n, *batch.shape[1:]), dtype=batch.dtype)
            batch = np.concatenate([batch, pad])
        chunks.append(np.asarray(runner.infer(batch))[:n])
    return np.concatenate(chunks, axis=0)


def accuracy(runner: Runner, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy in [0, 1] of ``runner`` on samples ``x`` with integer labels ``y``.

    Example:
        >>> accuracy(runner, x_test, y_test)              # doctest: +SKIP
        0.9871
    """
    y = np.asarray(y).reshape(-1)
    if len(np.asarray(x)) != len(y):
        raise DataError(
            f"{len(np.asarray(x))} samples but {len(y)} labels",
            hint="x and y must have the same first dimension",
        )
    logits = predict(runner, x, batch_size=batch_size)
    return float(np.mean(logits.reshape(len(y), -1).argmax(axis=1) == y))

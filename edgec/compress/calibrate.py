"""Calibration data for post-training static quantization with ONNX Runtime.

Static INT8 needs the range of every activation tensor; ONNX Runtime measures it by running the
FP32 model on a calibration set that a :class:`CalibrationReader` feeds batch by batch. The
calibration method turns the collected values into a range:

- ``minmax``: the observed min/max (sensitive to a single outlier);
- ``percentile``: clips the histogram's tails at ``percentile`` (99.999 by default);
- ``entropy``: the threshold that minimises the KL divergence between the FP32 and INT8
  histograms (TensorRT's classic "entropy calibration").

Example:
    >>> x_cal = select_calibration_samples(x_train, 256, seed=0)
    >>> reader = CalibrationReader(x_cal, input_name="input", batch_size=32)
    >>> calibration_method("entropy")
    <CalibrationMethod.Entropy: 1>
"""

from __future__ import annotations

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod

from edgec.errors import DataError, RecipeError
from edgec.registry import Registry

CALIBRATION_METHODS: Registry[CalibrationMethod] = Registry(
    "calibration method", field="quantize.calibration.method", normalize=lambda n: n.strip().lower())
CALIBRATION_METHODS.register("minmax", CalibrationMethod.MinMax)
CALIBRATION_METHODS.register("percentile", CalibrationMethod.Percentile)
CALIBRATION_METHODS.register("entropy", CalibrationMethod.Entropy)


def calibration_method(name: str) -> CalibrationMethod:
    """ONNX Runtime's :class:`CalibrationMethod` for a recipe name; RecipeError for unknown names.

    Example:
        >>> calibration_method("minmax")
        <CalibrationMethod.MinMax: 0>
    """
    return CALIBRATION_METHODS.get(name)


def select_calibration_samples(x: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A seeded random subset of ``n`` samples of ``x`` (first axis), kept in their original order.

    Example:
        >>> select_calibration_samples(np.zeros((1000, 1, 8, 8), np.float32), 256).shape
        (256, 1, 8, 8)
    """
    if n < 1:
        raise RecipeError(f"quantize.calibration.samples must be at least 1, got {n}",
                          hint="set quantize.calibration.samples to a positive number, e.g. 256")
    have = int(np.shape(x)[0]) if np.ndim(x) else 0
    if have < n:
        raise DataError(f"calibration set has {have} samples but quantize.calibration.samples asks for {n}",
                        hint=f"lower quantize.calibration.samples to at most {have}, or provide more data")
    rng = np.random.default_rng(seed)
    # Sorted indices: the subset is a deterministic function of (x, n, seed) and reads memory in order.
    idx = np.sort(rng.choice(have, size=n, replace=False))
    return np.asarray(x)[idx]


class CalibrationReader(CalibrationDataReader):
    """Feeds ``x`` to ONNX Runtime's calibrator as ``{input_name: batch}`` dicts, ``batch_size`` at a time.

    ``get_next`` returns ``None`` after the last batch; ``rewind`` starts over (ORT's calibrators
    read the data once per pass). ``set_range`` limits the reader to batches ``[start, end)``, which
    ORT uses for its strided min-max option (``len()`` counts batches).

    Example:
        >>> reader = CalibrationReader(np.zeros((70, 4), np.float32), "input", batch_size=32)
        >>> [b["input"].shape[0] for b in reader]
        [32, 32, 6]
    """

    def __init__(self, x: np.ndarray, input_name: str, batch_size: int = 32, *,
                 drop_last: bool = False, dtype: type = np.float32):
        if batch_size < 1:
            raise RecipeError(f"quantize.calibration.batch_size must be at least 1, got {batch_size}",
                              hint="set quantize.calibration.batch_size to a positive number, e.g. 32")
        self.x = np.ascontiguousarray(x, dtype=dtype)
        self.input_name = input_name
        self.batch_size = int(batch_size)
        # drop_last: for models exported with a fixed batch, a short last batch would not fit.
        full = len(self.x) // self.batch_size
        self.n_batches = full if drop_last else -(-len(self.x) // self.batch_size)
        self._start, self._end = 0, self.n_batches
        self._next = 0

    def __len__(self) -> int:
        return self.n_batches

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        i = self._next * self.batch_size
        self._next += 1
        return {self.input_name: self.x[i:i + self.batch_size]}

    def rewind(self) -> None:
        self._next = self._start

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start = max(0, int(start_index))
        self._end = min(self.n_batches, int(end_index))
        self._next = self._start


__all__ = ["CALIBRATION_METHODS", "CalibrationReader", "calibration_method", "select_calibration_samples"]

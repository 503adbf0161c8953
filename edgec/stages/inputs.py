"""How a task feeds its models: the one interface ``verify`` and ``bench`` use for every model of every task.

Image models all take the same test images; text models each take their own token ids for the same
sentences (:class:`edgec.stages.text.TextInputs`). Verify and bench are written once, over this interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edgec.artifacts import StageWork
from edgec.backends import get_backend
from edgec.runtimes import open_runner, predict

if TYPE_CHECKING:
    from edgec.build_context import BuildContext


def thread_options(runtime: str, threads: int | None) -> dict:
    """The runner option that sets ``threads`` CPU threads (each backend names it; {} where there is none)."""
    return get_backend(runtime).thread_options(threads)


class ModelInputs(Protocol):
    """What verify and bench need to know about a task's inputs."""

    unit: str  # what one test example is, for messages: "images", "sentences"
    images: np.ndarray | None  # test images (INT8 saturation prediction), None for other inputs

    def open(self, name: str, path: Path, runtime: str, threads: int | None = None, **options: Any):
        """A :class:`edgec.runtimes.Runner` for model ``name``."""

    def test_logits(self, name: str, path: Path, runtime: str, **options: Any) -> np.ndarray:
        """Logits of model ``name`` on the whole test split, in its order."""

    def feed(self, name: str, n: int) -> np.ndarray:
        """A batch of ``n`` real test inputs for model ``name`` (latency)."""

    def describe(self, name: str) -> list[dict]:
        """The inputs of model ``name`` as the results file records them."""


class ImageInputs:
    """Every model takes the same test images (NCHW float32)."""

    unit = "images"

    def __init__(self, ctx: BuildContext, work: StageWork | None = None):
        self.images = ctx.dataset.test.x

    def open(self, name: str, path: Path, runtime: str, threads: int | None = None, **options: Any):
        """A runner for the model file (TensorRT / kernels options come from the recipe's ``engine``)."""
        return open_runner(path, runtime=runtime, **options, **thread_options(runtime, threads))

    def test_logits(self, name: str, path: Path, runtime: str, **options: Any) -> np.ndarray:
        """Logits on the test images; an engine's batch is bounded by its optimization profile."""
        with self.open(name, path, runtime, **options) as runner:
            return predict(runner, self.images, batch_size=getattr(runner, "max_batch", None) or 256)

    def feed(self, name: str, n: int) -> np.ndarray:
        """``n`` real test images (repeated if the split is smaller): realistic data, never zeros."""
        x = self.images
        reps = -(-n // len(x))
        return np.ascontiguousarray(np.concatenate([x] * reps)[:n])

    def describe(self, name: str) -> list[dict]:
        return [{"name": "input", "shape": list(self.images.shape[1:]), "dtype": "float32", "source": "test split"}]

"""Run a ``torch.nn.Module`` behind the :class:`~edgec.backends.runner.Runner` interface.

This is the reference every converted model is checked against, so it runs the module exactly as
trained: eval mode, ``torch.inference_mode()``, float32 unless the module's weights say otherwise.

Example:
    >>> from edgec.backends.torch.runner import TorchRunner
    >>> runner = TorchRunner(torch.nn.Linear(4, 2))
    >>> runner.infer(np.ones((3, 4), np.float32)).shape
    (3, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from edgec.errors import EdgecError, ModelError
from edgec.backends.runner import Runner, TensorSpec, prepare_feeds

__all__ = ["TorchRunner"]


class TorchRunner(Runner):
    """A torch module on ``device`` ("cpu", "cuda", "cuda:1").

    ``module`` is put in eval mode and moved to ``device`` in place (``nn.Module.to`` mutates).
    ``threads`` calls ``torch.set_num_threads``, which is process-wide: it also affects other torch
    code in this process. ``input_shape`` is one sample's shape, without the batch dimension;
    by default it is read from the module's ``input_shape`` attribute when it has one.
    ``input_dtype`` names the input's numpy dtype when it is not the weights' float type
    (``"int64"`` token ids for text models).

    Example:
        >>> TorchRunner(net, threads=1).describe()["threads"]      # doctest: +SKIP
        1
    """

    runtime = "torch"

    def __init__(
        self,
        module: torch.nn.Module,
        device: str = "cpu",
        threads: int | None = None,
        input_shape: Sequence[int] | None = None,
        input_dtype: str | None = None,
    ):
        if not isinstance(module, torch.nn.Module):
            raise ModelError(f"TorchRunner needs a torch.nn.Module, got {type(module).__name__}")
        self.device = _check_device(device)
        if threads is not None:
            if threads < 1:
                raise EdgecError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        self.module: torch.nn.Module | None = module.eval().to(self.device)
        # The dtype of the first floating parameter (a half-precision model wants half inputs);
        # a module without parameters (e.g. nn.Flatten) takes float32.
        dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
        self._dtype = dtype
        shape = input_shape if input_shape is not None else getattr(module, "input_shape", None)
        shape = shape() if callable(shape) else shape
        sample = tuple(int(d) for d in shape) if shape is not None else (None,)
        dtype_name = str(dtype).removeprefix("torch.")
        # input_dtype: e.g. "int64" for a text model fed token ids (default: the weights' float type).
        self.inputs = [TensorSpec("input", ("batch", *sample), input_dtype or dtype_name)]
        # The output's shape is only known after a forward pass; name and batch dim are fixed.
        self.outputs = [TensorSpec("output", ("batch", None), dtype_name)]
        self._output_names: list[str] | None = None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Forward the named inputs (in :attr:`inputs` order) and return outputs as numpy.

        Example:
            >>> runner.run({"input": x})["output"].shape        # doctest: +SKIP
            (8, 10)
        """
        if self.module is None:
            raise EdgecError("this TorchRunner is closed", hint="open a new runner")
        ready = prepare_feeds(self.inputs, feeds)
        args = [torch.from_numpy(ready[s.name]).to(self.device) for s in self.inputs]
        with torch.inference_mode():
            result = self.module(*args)
        return self._to_numpy(result)

    def _to_numpy(self, result: Any) -> dict[str, np.ndarray]:
        # Modules return a tensor, a tuple of tensors or a dict of them; give each a stable name.
        if isinstance(result, torch.Tensor):
            named = {"output": result}
        elif isinstance(result, dict):
            named = dict(result)
        elif isinstance(result, (tuple, list)):
            named = {f"output_{i}": t for i, t in enumerate(result)}
        else:
            raise ModelError(
                f"the module returned {type(result).__name__}; "
                "expected a tensor, a tuple or a dict of tensors"
            )
        out = {k: v.detach().cpu().numpy() for k, v in named.items()}  # .cpu() also syncs CUDA
        if self._output_names is None:  # record the real outputs after the first forward pass
            self._output_names = list(out)
            self.outputs = [
                TensorSpec(k, ("batch", *v.shape[1:]), str(v.dtype)) for k, v in out.items()
            ]
        return out

    def describe(self) -> dict[str, Any]:
        """Runtime, torch version, device (and GPU name), thread counts, module class, #params.

        Example:
            >>> TorchRunner(torch.nn.Linear(4, 2)).describe()["runtime"]
            'torch'
        """
        info: dict[str, Any] = {
            "runtime": self.runtime,
            "version": torch.__version__,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "dtype": str(self._dtype).removeprefix("torch."),
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }
        if self.module is not None:
            info["module"] = type(self.module).__name__
            info["parameters"] = sum(p.numel() for p in self.module.parameters())
        if self.device.type == "cuda":
            info["device_name"] = torch.cuda.get_device_name(self.device)
            info["cuda"] = torch.version.cuda
        return info

    def close(self) -> None:
        """Drop the module reference (and free cached GPU memory when on CUDA)."""
        was_on_gpu = self.module is not None and self.device.type == "cuda"
        self.module = None
        if was_on_gpu:
            torch.cuda.empty_cache()


def _check_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise EdgecError(f"unknown torch device '{device}'",
                         hint="use 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EdgecError(
            f"device '{device}' was asked for but torch sees no CUDA GPU "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'})",
            hint="run on a machine with a CUDA GPU and a CUDA build of torch, or use device='cpu'",
        )
    return dev

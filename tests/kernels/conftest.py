"""Fixtures for the kernel tests: the CPU emulation drivers (compiled once per session) and a GPU gate.

The drivers in ``kernels/cpu_harness/`` include the unmodified ``kernels/*.cu``
sources after ``cuda_cpu_emu.h`` (same folder) and are built with g++ (``-std=c++20 -pthread``), with AddressSanitizer
and UBSan when the toolchain has them, so an out-of-bounds read in a kernel fails the test.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgec.kernels.bench import gpu_missing
from edgec.kernels.loader import kernel_dir

KERNELS = kernel_dir()  # top-level kernels/ (edgec/kernels/cuda/ in a wheel install)
HARNESS = KERNELS / "cpu_harness"
DRIVERS = {"sparse_conv2d_csr": "sparse_conv2d_csr_main.cpp", "lowbit": "lowbit_batched_gemv_main.cpp", "lowbit_mma": "lowbit_mma_gemm_main.cpp",
           "int8_gemm_dp4a": "int8_gemm_dp4a_main.cpp", "selftest": "emu_selftest.cpp"}
BASE_FLAGS = ["-std=c++20", "-O1", "-g", "-pthread", "-include", str(KERNELS / "cuda_cpu_emu.h"),
              "-I", str(KERNELS)]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


@functools.lru_cache(maxsize=1)
def _sanitizers_work(gxx: str) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "t.cpp", Path(tmp) / "t"
        src.write_text("#include <thread>\nint main(){std::thread t([]{}); t.join(); return 0;}\n")
        ok = subprocess.run([gxx, "-std=c++20", "-pthread", *SANITIZE, str(src), "-o", str(exe)],
                            capture_output=True).returncode == 0
        return ok and subprocess.run([str(exe)], capture_output=True).returncode == 0


@dataclass
class Emulator:
    """Runs a kernel entry on the CPU through its driver: inputs in, outputs out, as numpy arrays."""

    binaries: dict[str, Path]
    workdir: Path

    def run(self, driver: str, entry: str, inputs: dict[str, np.ndarray],
            outputs: dict[str, tuple[type, int]], **params: object) -> dict[str, np.ndarray]:
        run_dir = Path(tempfile.mkdtemp(dir=self.workdir))
        for name, arr in inputs.items():
            np.ascontiguousarray(arr).tofile(run_dir / f"{name}.bin")
        args = [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in params.items()]
        proc = subprocess.run([str(self.binaries[driver]), str(run_dir), entry, *args],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{entry} failed on the CPU emulator:\n{proc.stderr[-4000:]}"
        out = {name: np.fromfile(run_dir / f"{name}.bin", dtype) for name, (dtype, _) in outputs.items()}
        for name, (_, count) in outputs.items():
            assert out[name].size == count, f"{name}: {out[name].size} values, expected {count}"
        shutil.rmtree(run_dir, ignore_errors=True)
        return out


@pytest.fixture(scope="session")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Emulator:
    """The compiled CPU drivers; skips (with the reason) only when there is no g++."""
    gxx = os.environ.get("CXX") or shutil.which("g++")
    if not gxx:
        pytest.skip("g++ not found: the CPU emulation of the CUDA kernels needs a C++20 compiler")
    build = tmp_path_factory.mktemp("kernel-emu")
    flags = BASE_FLAGS + (SANITIZE if _sanitizers_work(gxx) else [])
    procs = {}
    for name, src in DRIVERS.items():  # compile in parallel: ~5 s each
        procs[name] = subprocess.Popen([gxx, *flags, str(HARNESS / src), "-o", str(build / name)],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"g++ could not build the {name} driver:\n{err[-4000:]}"
    return Emulator({name: build / name for name in DRIVERS}, build)


def gpu_skip_reason() -> str | None:
    """Why the pycuda path cannot run here (no GPU, pycuda or nvcc), or None when it can."""
    return gpu_missing()


@pytest.fixture
def cuda() -> object:
    """torch.device('cuda:0') when the GPU path can run; skips with the reason otherwise."""
    reason = gpu_skip_reason()
    if reason:
        pytest.skip(reason)
    import torch

    return torch.device("cuda:0")

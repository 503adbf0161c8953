"""Build extra CPU-emulation drivers (kernels/cpu_harness/*_main.cpp) the way conftest's ``emu`` fixture does.

The INT8 and sparse-conv tests use their own drivers; they are compiled with the same flags (C++20, the
emulator header forced in, AddressSanitizer + UBSan when the toolchain has them) and run through the same
:class:`Emulator`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.kernels.conftest import BASE_FLAGS, HARNESS, SANITIZE, Emulator, _sanitizers_work


def build_emulator(build: Path, drivers: dict[str, Path], extra_flags: tuple[str, ...] = ()) -> Emulator:
    """Compile ``{name: source}`` drivers into ``build`` (in parallel); skips when there is no g++."""
    gxx = os.environ.get("CXX") or shutil.which("g++")
    if not gxx:
        pytest.skip("g++ not found: the CPU emulation of the CUDA kernels needs a C++20 compiler")
    flags = BASE_FLAGS + (SANITIZE if _sanitizers_work(gxx) else []) + list(extra_flags)
    procs = {name: subprocess.Popen([gxx, *flags, "-I", str(HARNESS), str(src), "-o", str(build / name)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, src in drivers.items()}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"g++ could not build the {name} driver:\n{err[-4000:]}"
    return Emulator({name: build / name for name in drivers}, build)

"""Read the SASS (machine code) of compiled kernels with ``cuobjdump -sass``, to check design properties in CI.

The performance of the kernels rests on a few facts about the generated code that no CPU test sees: 128-bit
global loads (``LDG.E.128``) in the GEMVs, ``LOP3`` in the W4 decode, ``HMMA`` in the tensor-core path,
``IDP.4A`` in the INT8 kernel, one immediate-operand ``FFMA`` per nonzero in a generated sparse conv, and no
local-memory traffic (``LDL``/``STL``: spills). :func:`disassemble` turns a cubin into
``{function: [instruction, ...]}`` and :func:`opcodes` counts opcodes, so a test can assert them for sm_90 and
sm_87 without a GPU.

``cuobjdump`` (and the ``nvdisasm`` it calls) come with the CUDA toolkit; where the toolkit lacks them, the
``nvidia-cuda-cuobjdump`` and ``nvidia-cuda-nvdisasm`` wheels provide them (``nvidia/cu13/bin/``).

Example:
    >>> cubin, _ = loader.compile_cubin(loader.kernel_source("int8_gemv_mmvq"), "sm_90")
    >>> opcodes(disassemble(cubin)["int8_mmvq_f16_mb1"])["LDG.E.128.CONSTANT"]
    8
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from edgec.kernels.loader import KernelError

_FUNC = re.compile(r"^\s*Function\s*:\s*(\S+)")
# "/*0080*/   @!P0 LDG.E.128.CONSTANT R4, desc[UR6][R2.64] ;"
_INSTR = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)(.*?);")


def _tool(name: str) -> str | None:
    """``name`` from PATH, ``$CUDA_HOME/bin`` or an ``nvidia-cuda-*`` wheel (``nvidia/cu*/bin``)."""
    found = shutil.which(name)
    if found:
        return found
    roots = [Path(os.environ["CUDA_HOME"]) / "bin"] if os.environ.get("CUDA_HOME") else []
    roots.append(Path("/usr/local/cuda/bin"))
    for entry in sys.path:
        nvidia = Path(entry) / "nvidia"
        if nvidia.is_dir():
            roots += sorted(nvidia.glob("cu*/bin")) + sorted(nvidia.glob("cuda_*/bin"))
    return next((str(r / name) for r in roots if (r / name).is_file()), None)


def cuobjdump_missing() -> str | None:
    """Why SASS cannot be read here (no cuobjdump / nvdisasm), or None when it can."""
    missing = [t for t in ("cuobjdump", "nvdisasm") if _tool(t) is None]
    if missing:
        return (f"{' and '.join(missing)} not found (CUDA toolkit, or pip install nvidia-cuda-cuobjdump "
                "nvidia-cuda-nvdisasm)")
    return None


def disassemble(cubin: bytes) -> dict[str, list[str]]:
    """``{function name: ["OPCODE operands", ...]}`` of a cubin, in program order."""
    reason = cuobjdump_missing()
    if reason:
        raise KernelError(f"cannot read SASS: {reason}", hint="pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm")
    tool, disasm = _tool("cuobjdump"), _tool("nvdisasm")
    env = {**os.environ, "PATH": f"{Path(disasm).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with tempfile.TemporaryDirectory(prefix="edgec-sass-") as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        proc = subprocess.run([tool, "-sass", str(path)], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise KernelError(f"cuobjdump -sass failed: {proc.stderr.strip()[-2000:]}",
                          hint="check that cuobjdump's CUDA version reads this nvcc's cubins")
    return parse_sass(proc.stdout)


def parse_sass(text: str) -> dict[str, list[str]]:
    """Parse ``cuobjdump -sass`` output (see :func:`disassemble`)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if m := _FUNC.match(line):
            current = out.setdefault(m.group(1), [])
        elif current is not None and (m := _INSTR.match(line)):
            current.append(f"{m.group(1)}{m.group(2).rstrip()}")
    return out


def opcodes(instructions: list[str]) -> Counter[str]:
    """Opcode (with modifiers, e.g. ``LDG.E.128.CONSTANT``) -> count."""
    return Counter(i.split(" ", 1)[0] for i in instructions)


def count(instructions: list[str], pattern: str) -> int:
    """Instructions whose opcode matches the regular expression ``pattern`` (anchored at the start)."""
    rx = re.compile(pattern)
    return sum(n for op, n in opcodes(instructions).items() if rx.match(op))


def spills(instructions: list[str]) -> int:
    """Local-memory loads and stores (``LDL``/``STL``): register spills or stack arrays."""
    return count(instructions, r"(LDL|STL)(\.|$)")

"""The machine code (SASS, sm_90 and sm_87) has the properties the kernels' designs depend on. No GPU needed.

nvcc compiles each kernel file to a cubin; cuobjdump -sass disassembles it (edgec.kernels.sass). The table below
says, per kernel and entry-point pattern, which instructions must be there: 128-bit global loads in the GEMVs,
LOP3 in the W4 decode, HFMA2 math, HMMA in the tensor-core path, IDP.4A in the INT8 kernel. A kernel file that
does not exist (yet) is skipped with that reason, never passed. Every function of every kernel file must be free
of local-memory traffic (LDL/STL: spills), and a generated sparse conv must have exactly one immediate FFMA per
nonzero and one shared-memory load per used tap.
"""

from __future__ import annotations

import functools
import re
import shutil
from dataclasses import dataclass

import numpy as np
import pytest

from edgec.kernels import loader, sass
from edgec.kernels import sparse_codegen as sc

ARCHS = ("sm_90", "sm_87")

pytestmark = [pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) is not installed"),
              pytest.mark.skipif(sass.cuobjdump_missing() is not None, reason=str(sass.cuobjdump_missing()))]


@dataclass(frozen=True)
class Expect:
    """Instructions every entry point of ``file`` matching ``entries`` must contain (name -> opcode regex)."""

    file: str  # kernels/<file>.cu; a glob picks the first match
    entries: str
    require: tuple[tuple[str, str], ...]


EXPECTATIONS = [
    Expect("int8_gemv_mmvq", r"int8_mmvq_(f16|f32)_mb\d+$",
           (("128-bit weight loads", r"LDG\.E\.128"), ("dp4a", r"IDP\.4A"), ("128-bit x loads from smem", r"LDS\.128"),
            ("warp-shuffle reduction", r"SHFL\.BFLY"))),
    Expect("lowbit_batched_gemv", r"lbgemv_f16_w4_m\d+$",
           (("128-bit weight loads", r"LDG\.E\.128"), ("LOP3 dequantization", r"LOP3\.LUT"),
            ("HFMA2 math", r"HFMA2(?!\.MMA)"))),
    Expect("lowbit_batched_gemv", r"lbgemv_f16_w1_m\d+$",
           (("128-bit weight loads", r"LDG\.E\.128"), ("sign flips by LOP3", r"LOP3\.LUT"),
            ("half2 math", r"(HADD2|HFMA2)(?!\.MMA|\.F32)"))),
    Expect("lowbit_batched_gemv", r"lbgemv_f16_w8_m\d+$", (("128-bit weight loads", r"LDG\.E\.128"),)),
    Expect("lowbit_mma_gemm", r"lbmma_", (("tensor-core MMA", r"HMMA\."),)),
    Expect("lowbit_mma_gemm", r"lbmma_f16_w4$",
           (("tensor-core MMA", r"HMMA\."), ("128-bit weight loads", r"LDG\.E\.128"),
            ("LOP3 dequantization", r"LOP3\.LUT"))),
]


def _source(pattern: str):
    return next(iter(sorted(loader.kernel_dir().glob(f"{pattern}.cu"))), None)


@functools.lru_cache(maxsize=None)
def _sass(path: str, arch: str) -> dict[str, list[str]]:
    cubin, _ = loader.compile_cubin(path, arch)
    return sass.disassemble(cubin)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("expect", EXPECTATIONS, ids=[f"{e.file}:{e.entries}" for e in EXPECTATIONS])
def test_design_properties_are_in_the_sass(expect, arch):
    src = _source(expect.file)
    if src is None:
        pytest.skip(f"kernels/{expect.file}.cu does not exist yet: nothing to check")
    functions = {name: ins for name, ins in _sass(str(src), arch).items() if re.match(expect.entries, name)}
    if not functions:
        pytest.skip(f"{src.name} has no entry point matching {expect.entries!r} yet")
    missing = [(name, what) for name, ins in functions.items() for what, rx in expect.require
               if sass.count(ins, rx) == 0]
    assert not missing, f"{src.name} for {arch}: missing {missing}"


@pytest.mark.parametrize("arch", ARCHS)
def test_no_kernel_spills_to_local_memory(arch):
    files = sorted(loader.kernel_dir().glob("*.cu"))
    assert files
    spilled = {(f.name, fn): sass.spills(ins) for f in files for fn, ins in _sass(str(f), arch).items()
               if sass.spills(ins)}
    assert not spilled, spilled


@pytest.mark.parametrize("arch", ARCHS)
def test_generated_sparse_conv_is_one_immediate_ffma_per_nonzero(arch, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEC_KERNEL_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    w[rng.random(w.shape) < 0.9] = 0.0  # the benchmark layer
    gen = sc.generate(w, 56, 56, padding=(1, 1), half=True)
    ins = sass.disassemble(sc.compile_generated(gen, arch))[sc.ENTRY]
    ffma = [i for i in ins if i.startswith("FFMA ")]
    assert len(ffma) == gen.nnz  # nothing dropped, nothing duplicated
    imm = re.compile(r"^FFMA \S+, \S+, -?\d[\d.e+-]*, \S+$")  # the weight is the immediate operand
    assert all(imm.match(i) for i in ffma), [i for i in ffma if not imm.match(i)][:3]
    assert sass.count(ins, r"LDS(\.|$)") == gen.tap_loads
    assert sass.spills(ins) == 0


def test_parse_sass():
    text = """
	code for sm_90
		Function : k1
        /*0000*/                   LDC R1, c[0x0][0x28] ;        /* 0x00000a00ff017b82 */
        /*0010*/              @!P0 LDG.E.128.CONSTANT R4, desc[UR4][R2.64] ;   /* 0x0 */
        /*0020*/                   STL [R1], R4 ;   /* 0x0 */
		Function : k2
        /*0000*/                   HFMA2.MMA R6, -RZ, RZ, 0, 0 ;  /* 0x0 */
        /*0010*/                   EXIT ;  /* 0x0 */
"""
    parsed = sass.parse_sass(text)
    assert parsed["k1"] == ["LDC R1, c[0x0][0x28]", "LDG.E.128.CONSTANT R4, desc[UR4][R2.64]", "STL [R1], R4"]
    assert sass.count(parsed["k1"], r"LDG\.E\.128") == 1 and sass.spills(parsed["k1"]) == 1
    assert sass.count(parsed["k2"], r"HMMA\.") == 0 and sass.count(parsed["k2"], r"HFMA2(?!\.MMA)") == 0
    assert sass.opcodes(parsed["k2"]) == {"HFMA2.MMA": 1, "EXIT": 1}

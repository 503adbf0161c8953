"""Which INT8 flavour suits ONNX Runtime on which CPU, and this CPU's INT8 instruction set.

ONNX Runtime's x86 INT8 kernels use VPDPBUSD where the CPU has VNNI (AVX512-VNNI or AVX-VNNI) and
VPMADDUBSW elsewhere; the latter saturates int16 pair sums, which ruins symmetric S8S8 files
(:mod:`edgec.compress.saturation`). ARM's dot-product instructions (SDOT/UDOT) and its plain NEON
path widen before adding and do not saturate.

Example:
    >>> int8_isa({"arch": "x86_64", "flags": {"avx2": True, "avx512_vnni": False, "avx_vnni": False}})
    'x86-avx2'
    >>> choose_cpu_flavour("auto", "x86-avx2")
    'u8s8_reduce_range'

Measured on a 2-core AVX2-only EPYC (``benchmarks/results/realistic.json``, docs/quantize_onnx.md): with
ONNX Runtime 1.32, S8S8 and ``reduce_range`` (int8 activations) are slower than FP32 there, while uint8
activations with 7-bit weights (``u8s8_reduce_range``) run as fast as ONNX Runtime's own U8S8 recipe and
cannot saturate: ``auto``'s choice on x86 without VNNI.
"""

from __future__ import annotations

from typing import Any

from edgec.machine import cpu_info

# flavour -> where ONNX Runtime on a CPU runs it without saturating
FLAVOUR_CPUS: dict[str, str] = {
    "s8s8": "CPUs with VNNI (x86 AVX512-VNNI / AVX-VNNI) or ARM; saturates on x86 without VNNI",
    "reduce_range": "every x86 and ARM CPU (7-bit weights: VPMADDUBSW pair sums fit int16)",
    "u8u8": "every x86 and ARM CPU (U8U8 kernel widens to int16 first)",
    "u8s8": "CPUs with VNNI or ARM; may saturate on x86 without VNNI",
    "u8s8_reduce_range": "every x86 and ARM CPU (uint8 activations, 7-bit weights: pair sums fit int16); "
                         "ONNX Runtime only (asymmetric activations)",
}
SAFE_EVERYWHERE = frozenset({"reduce_range", "u8u8", "u8s8_reduce_range"})


def int8_isa(cpu: dict[str, Any] | None = None) -> str:
    """``x86-vnni``, ``x86-avx2`` (x86 without VNNI), ``arm-dotprod``, ``arm`` or ``other`` for ``cpu``
    (:func:`edgec.machine.cpu_info`'s shape; this machine's when None)."""
    if cpu is None:
        cpu = cpu_info()
    arch, flags = str(cpu.get("arch") or "").lower(), cpu.get("flags") or {}
    if arch in ("x86_64", "amd64", "i386", "i686", "x86"):
        return "x86-vnni" if flags.get("avx512_vnni") or flags.get("avx_vnni") else "x86-avx2"
    if arch in ("aarch64", "arm64") or arch.startswith("arm"):
        return "arm-dotprod" if flags.get("dotprod") else "arm"
    return "other"


def choose_cpu_flavour(setting: str, isa: str | None = None) -> str:
    """The flavour of the ONNX Runtime CPU file: ``setting`` itself, or for ``auto`` S8S8 where this CPU
    cannot saturate (VNNI, ARM), ``u8s8_reduce_range`` on x86 without VNNI (the fastest flavour there that
    cannot saturate) and ``reduce_range`` on unknown CPUs."""
    if setting != "auto":
        return setting
    isa = isa or int8_isa()
    if isa in ("x86-vnni", "arm-dotprod", "arm"):
        return "s8s8"
    return "u8s8_reduce_range" if isa == "x86-avx2" else "reduce_range"


__all__ = ["FLAVOUR_CPUS", "SAFE_EVERYWHERE", "choose_cpu_flavour", "int8_isa"]

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

Measured with ONNX Runtime 1.32 on two 2-core x86 CPUs (``benchmarks/results/realistic.json``, AVX2-only
AMD EPYC; ``realistic_vnni.json``, Intel Xeon with AVX-512 VNNI; docs/quantize_onnx.md): files with int8
activations (S8S8, ``reduce_range``) run *slower* than FP32 on both (0.6-0.8x on ResNet-18 and
MobileNetV2 at 224), while uint8 activations (``u8s8``, ``u8s8_reduce_range``) run as fast as ONNX
Runtime's own U8S8 recipe: 2.5x FP32 on ResNet-18 at batch 1 with VNNI, 1.0x without. So the CPU file
has uint8 activations: ``u8s8_reduce_range`` by default (7-bit weights: it cannot saturate on any x86 or
ARM CPU, so it is right wherever the file goes), and ``auto`` picks for *this* CPU: ``u8s8`` (8-bit weights)
with VNNI, ``u8s8_reduce_range`` without, S8S8 on ARM (not measured here) and ``reduce_range`` elsewhere.
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
# int8_isa() -> what cpu_flavour 'auto' picks there (any other ISA: reduce_range)
AUTO_FLAVOUR: dict[str, str] = {"x86-vnni": "u8s8", "x86-avx2": "u8s8_reduce_range",
                                "arm-dotprod": "s8s8", "arm": "s8s8"}


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
    """The flavour of the ONNX Runtime CPU file: ``setting`` itself, or for ``auto`` the fastest measured
    flavour that cannot saturate on this CPU (``isa``; this machine's when None): ``u8s8`` with VNNI
    (VPDPBUSD does not saturate), ``u8s8_reduce_range`` on x86 without VNNI, S8S8 on ARM and
    ``reduce_range`` on unknown CPUs."""
    if setting != "auto":
        return setting
    return AUTO_FLAVOUR.get(isa or int8_isa(), "reduce_range")


__all__ = ["AUTO_FLAVOUR", "FLAVOUR_CPUS", "SAFE_EVERYWHERE", "choose_cpu_flavour", "int8_isa"]

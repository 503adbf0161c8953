"""Per-layer generated sparse conv2d kernels (SparseRT-style): the nonzero weights become FFMA immediates.

A pruned conv layer's weights are constants at inference time, so instead of walking a CSR structure at run time
(index loads, address math and a bounds test per useful FMA: the old ``sparse_conv2d_csr.cu``), this module
writes one CUDA source per layer in which every nonzero ``w[co, c, r, s]`` is an immediate operand of an FFMA:
each input value of the haloed shared-memory tile is loaded once per tap and FMA'd into every output channel of
the thread's group that uses it (``kernels/sparse_conv_gen.cuh`` has the skeleton and the launch shape). The
source is hashed; its cubin is compiled once per (source, arch, nvcc) and cached on disk like the other kernels.

Honest scope: this targets batch 1 (latency). Unstructured sparsity cannot beat tensor-core dense convolution at
batch >= 8 on Hopper: 90% sparsity saves 10x the FLOPs, but FP16 tensor cores run ~7x (dense HMMA/WGMMA vs
FFMA/HFMA2 issue rate) faster than the CUDA-core FMAs this kernel needs, and the sparse code also pays
shared-memory loads and an irregular instruction stream. Structured 2:4 sparsity (TensorRT's SPARSE_WEIGHTS) is
the tool for large batches.

Example:
    >>> gen = generate(conv.weight, 56, 56, padding=(1, 1), half=True)
    >>> k = SparseConvKernel(gen)              # compiles (or loads the cached cubin) on the GPU
    >>> y = k(x16)                             # x16 [N, 64, 56, 56] fp16 CUDA -> y [N, 64, 56, 56]
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.atomic import atomic_write_bytes
from edgec.kernels import loader
from edgec.kernels.packing import CsrConv2dWeight, conv2d_output_size, unpack_csr_conv2d

if TYPE_CHECKING:
    import torch

HEADER = "sparse_conv_gen.cuh"
ENTRY = "sparse_conv_gen"
SMEM_BUDGET = 32 * 1024  # bytes of input tile per block: all 64 channels of a 3x34 tile in one step; 3+ blocks/SM


@dataclass(frozen=True)
class Tiling:
    """A thread = one pixel x ``g`` output channels; a block = a ``th x tw`` output tile x ``gpb`` such channel
    groups (all on one staged input tile); ``cc`` input channels per shared-memory step."""

    th: int
    tw: int
    g: int
    cc: int
    gpb: int = 1

    @property
    def threads(self) -> int:
        return self.th * self.tw * self.gpb


@dataclass(frozen=True)
class GeneratedConv:
    """A generated kernel: its source, launch shape and what it computes."""

    source: str
    digest: str           # sha256 of the source and the skeleton header
    half: bool
    shape: tuple[int, int, int, int]  # weight [Cout, C, KH, KW]
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    tiling: Tiling
    groups: int
    nnz: int
    tap_loads: int         # shared-memory loads per output pixel summed over groups (one per used tap)

    def launch(self, n: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """``(grid, block)`` for a batch of ``n`` images."""
        t = self.tiling
        oh, ow = self.out_hw
        return (math.ceil(oh / t.th) * math.ceil(ow / t.tw), math.ceil(self.groups / t.gpb), n), (t.threads, 1, 1)


def _dense(weight: Any) -> np.ndarray:
    if isinstance(weight, CsrConv2dWeight):
        return unpack_csr_conv2d(weight)
    if hasattr(weight, "detach"):
        weight = weight.detach().float().cpu().numpy()
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 4:
        raise loader.KernelError(f"conv weight must be [Cout, C, KH, KW], got shape {w.shape}")
    return w


def default_tiling(out_hw: tuple[int, int], c: int, cout: int, in_tile: Any = None, g: int = 8,
                   th: int | None = None) -> Tiling:
    """A tiling: tiles of 32 output columns (a warp per row; 16 or 8 for narrow outputs) x ``th`` rows (1 by
    default: more blocks at batch 1), ``g`` output channels per thread, as many groups per block as fit in 512
    threads (so the staged tile serves all of them), <= 32 KB of input tile per step.

    ``in_tile(th, tw) -> (th_in, tw_in)`` gives the haloed tile (default: 3x3, stride 1).
    """
    oh, ow = out_hw
    tw = 32 if ow > 16 else 16 if ow > 8 else 8
    th = th or max(1, 32 // tw)
    g = min(g, cout)
    groups = math.ceil(cout / g)
    gpb = max(1, min(groups, 512 // (th * tw)))
    gpb = math.ceil(groups / math.ceil(groups / gpb))  # balanced: no nearly empty last block
    th_in, tw_in = in_tile(th, tw) if in_tile else (th + 2, tw + 2)
    cc_max = max(1, SMEM_BUDGET // (th_in * tw_in * 4))
    steps = math.ceil(c / cc_max)
    return Tiling(th, tw, g, math.ceil(c / steps), gpb)


def candidate_tilings(out_hw: tuple[int, int], c: int, cout: int, in_tile: Any = None) -> list[Tiling]:
    """The tilings the benchmark autotunes over (SparseRT-style): 8, 16 or 64 output channels per thread.

    Fewer channels per thread give more warps (latency hiding at batch 1); more give more FFMAs per shared-memory
    load (the static model's bound: one LDS per used tap per pixel costs 4 FFMAs of issue bandwidth). Not 32:
    ptxas hoists that straight-line code's loads until it spills (222-255 registers on sm_90/sm_87)."""
    out = []
    for g, th in ((8, 1), (16, 1), (64, 1)):
        t = default_tiling(out_hw, c, cout, in_tile, g=g, th=th)
        if t not in out:
            out.append(t)
    return out


def _hexf(v: float) -> str:
    return float.hex(float(np.float32(v))) + "f"


def generate(weight: Any, h: int, w: int, *, stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
             dilation: tuple[int, int] = (1, 1), half: bool = True, tiling: Tiling | None = None) -> GeneratedConv:
    """Write the kernel source of one conv layer (groups=1, zero padding) for ``h x w`` inputs."""
    wd = _dense(weight)
    cout, c, kh, kw = wd.shape
    (sh, sw), (ph, pw), (dh, dw) = tuple(stride), tuple(padding), tuple(dilation)
    oh, ow = conv2d_output_size(h, w, kh, kw, (sh, sw), (ph, pw), (dh, dw))  # PackingError when none

    def in_tile(th: int, tw: int) -> tuple[int, int]:
        return (th - 1) * sh + (kh - 1) * dh + 1, (tw - 1) * sw + (kw - 1) * dw + 1

    t = tiling or default_tiling((oh, ow), c, cout, in_tile)
    th_in, tw_in = in_tile(t.th, t.tw)
    if t.cc * th_in * tw_in * 4 > 48 * 1024:
        raise loader.KernelError(f"tiling {t} needs more than 48 KB of shared memory", hint="use fewer channels per step")
    if t.threads > 1024 or (t.gpb > 1 and (t.th * t.tw) % 32):
        raise loader.KernelError(f"tiling {t}: a block needs at most 1024 threads, and th * tw a multiple of 32 "
                                 "when it runs several groups", hint="use default_tiling()")
    groups, steps = math.ceil(cout / t.g), math.ceil(c / t.cc)
    body, loads = [], 0
    for step in range(steps):
        for g in range(groups):
            body.append(f"    case {step * groups + g}: {{")
            cos = range(g * t.g, min(cout, (g + 1) * t.g))
            for ci in range(step * t.cc, min(c, (step + 1) * t.cc)):
                for r in range(kh):
                    for s in range(kw):
                        used = [(co - g * t.g, wd[co, ci, r, s]) for co in cos if wd[co, ci, r, s] != 0]
                        if not used:
                            continue
                        off = (ci - step * t.cc) * th_in * tw_in + r * dh * tw_in + s * dw
                        body.append(f"      v = tile[{off}];")
                        body.extend(f"      acc[{j}] = fmaf(v, {_hexf(val)}, acc[{j}]);" for j, val in used)
                        loads += 1
            body.append("    } break;")
    defines = {"SCG_T": "__half" if half else "float", "SCG_C": c, "SCG_H": h, "SCG_W": w, "SCG_COUT": cout,
               "SCG_OH": oh, "SCG_OW": ow, "SCG_SH": sh, "SCG_SW": sw, "SCG_PH": ph, "SCG_PW": pw,
               "SCG_TH": t.th, "SCG_TW": t.tw, "SCG_TH_IN": th_in, "SCG_TW_IN": tw_in, "SCG_CC": t.cc,
               "SCG_CHUNKS": steps, "SCG_G": t.g, "SCG_GROUPS": groups, "SCG_GPB": t.gpb}
    nnz = int(np.count_nonzero(wd))
    src = "\n".join([
        f"// generated by edgec.kernels.sparse_codegen: conv {cout}x{c}x{kh}x{kw}, {nnz} nonzeros, input {h}x{w}, "
        f"stride {sh},{sw} padding {ph},{pw} dilation {dh},{dw}; tiling {t}",
        *(f"#define {k} {v}" for k, v in defines.items()),
        "__device__ __forceinline__ void scg_compute(int step, int group, const float* tile, float* acc) {",
        "  float v;",
        "  switch (step * SCG_GROUPS + group) {",
        *body,
        "    default: break;",
        "  }",
        "}",
        f'#include "{HEADER}"',
        ""])
    digest = hashlib.sha256(src.encode() + (loader.kernel_dir() / HEADER).read_bytes()).hexdigest()
    return GeneratedConv(src, digest, half, (cout, c, kh, kw), (h, w), (oh, ow), t, groups, nnz, loads)


def compile_generated(gen: GeneratedConv, arch: str) -> bytes:
    """The cubin of a generated kernel for ``arch``: from the on-disk cache, or compiled by nvcc and cached."""
    key = hashlib.sha256(f"{gen.digest}\0{arch}\0{loader.nvcc_version()}\0{loader.NVCC_OPTIONS}".encode())
    path = loader.cache_dir() / f"sparse_conv_gen-{arch}-{key.hexdigest()[:24]}.cubin"
    if path.is_file():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_suffix(".cu")
    atomic_write_bytes(src, gen.source.encode())
    cubin, _ = loader.compile_cubin(src, arch, (*loader.NVCC_OPTIONS, "-I", str(loader.kernel_dir())))
    atomic_write_bytes(path, cubin)
    return cubin


class SparseConvKernel:
    """A generated conv kernel loaded on the GPU (device 0, torch's context); call it on CUDA tensors."""

    def __init__(self, gen: GeneratedConv, arch: str | None = None):
        self.gen = gen
        arch = arch or loader.device_arch()
        drv = loader._pycuda()
        loader._ensure_current_context()
        self._module = drv.module_from_buffer(compile_generated(gen, arch))
        self._fn = self._module.get_function(ENTRY)
        self._fn.prepare("PPP")

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None = None, out: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """``y [N, Cout, OH, OW]`` of ``x [N, C, H, W]`` (contiguous, the dtype the kernel was made for)."""
        import torch

        g = self.gen
        want = torch.float16 if g.half else torch.float32
        if not x.is_cuda or x.dtype != want or tuple(x.shape[1:]) != (g.shape[1], *g.in_hw):
            raise loader.KernelError(f"this generated conv takes {want} CUDA input [N, {g.shape[1]}, {g.in_hw[0]}, "
                                     f"{g.in_hw[1]}], got {x.dtype} {tuple(x.shape)} on {x.device}",
                                     hint="generate a kernel for this input size/dtype")
        x = x.contiguous()
        n = x.shape[0]
        y = out if out is not None else torch.empty((n, g.shape[0], *g.out_hw), dtype=x.dtype, device=x.device)
        if n:
            grid, block = g.launch(n)
            args = (x.data_ptr(), 0 if bias is None else bias.data_ptr(), y.data_ptr())
            pstream, tstream = loader.shared_stream()  # the kernels' stream, which torch also sees
            cur = torch.cuda.current_stream()
            if cur.cuda_stream != tstream.cuda_stream:  # order with torch's stream both ways, no host sync
                tstream.wait_stream(cur)
            self._fn.prepared_async_call(grid, block, pstream, *args)
            if cur.cuda_stream != tstream.cuda_stream:
                cur.wait_stream(tstream)
        return y

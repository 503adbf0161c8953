"""Per-layer generated sparse conv kernels (edgec.kernels.sparse_codegen) on the CPU emulator vs the reference.

Each case generates the layer's source, builds the emulator driver with it and compares with the numpy CSR
reference: padding, stride, dilation, a partial output tile (OW > 32 splits into balanced tiles), a partial
output-channel group, several shared-memory steps with a partial last one, an all-zero layer (output = bias), fp16
and fp32 activations. The generated code's shape is checked too: one FFMA per nonzero and one shared-memory
load per used tap.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest

from edgec.kernels import sparse_codegen as sc
from edgec.kernels.loader import KernelError, kernel_dir
from edgec.kernels.packing import CsrConv2dWeight, PackingError, pack_csr_conv2d, sparse_conv2d_reference
from tests.kernels.emu_drivers import build_emulator

# (N, C, H, W, Cout, KH, KW, stride, padding, dilation, sparsity, bias, dtype, tiling)
CASES = {
    "3x3-pad1-bias-f32": (2, 5, 7, 9, 6, 3, 3, (1, 1), (1, 1), (1, 1), 0.7, True, "f32", None),
    "groups-and-steps": (1, 5, 6, 5, 6, 3, 3, (1, 1), (1, 1), (1, 1), 0.5, True, "f32", sc.Tiling(2, 3, 4, 2)),
    "groups-per-block": (2, 3, 6, 9, 10, 3, 3, (1, 1), (1, 1), (1, 1), 0.6, True, "f16", sc.Tiling(2, 16, 4, 2, 2)),
    "strided-dilated-f16": (1, 4, 11, 10, 5, 3, 3, (2, 1), (1, 2), (1, 2), 0.6, False, "f16", None),
    "wide-tiles-f16": (1, 3, 5, 40, 4, 3, 3, (1, 1), (1, 1), (1, 1), 0.8, True, "f16", None),
    "all-zero": (1, 2, 4, 4, 3, 1, 1, (1, 1), (0, 0), (1, 1), 1.0, True, "f32", None),
}


def _weight(rng, shape, sparsity):
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) < sparsity] = 0.0
    return w


@pytest.mark.parametrize("case", list(CASES))
def test_generated_conv_matches_reference(case, tmp_path):
    n, c, h, w, cout, kh, kw, stride, padding, dilation, sparsity, with_bias, dtype, tiling = CASES[case]
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    weight = _weight(rng, (cout, c, kh, kw), sparsity)
    packed = pack_csr_conv2d(weight)
    gen = sc.generate(packed, h, w, stride=stride, padding=padding, dilation=dilation, half=dtype == "f16",
                      tiling=tiling)
    src = tmp_path / "gen.cu"
    src.write_text(gen.source)
    emu = build_emulator(tmp_path, {"gen": kernel_dir() / "cpu_harness" / "sparse_conv_gen_main.cpp"},
                         (f'-DEDGEC_SCG_SOURCE="{src}"',))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    if dtype == "f16":
        x = x.astype(np.float16).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32) if with_bias else None
    oh, ow = gen.out_hw
    grid, block = gen.launch(n)
    inputs = {"x": x.astype(np.float16) if dtype == "f16" else x}
    if bias is not None:
        inputs["bias"] = bias
    out_dtype = np.float16 if dtype == "f16" else np.float32
    y = emu.run("gen", "sparse_conv_gen", inputs, {"y": (out_dtype, n * cout * oh * ow)}, N=n, C=c, H=h, W=w,
                Cout=cout, OH=oh, OW=ow, has_bias=int(bias is not None), grid=grid, block=block)["y"]
    y = y.astype(np.float32).reshape(n, cout, oh, ow)
    kw_args = {"stride": stride, "padding": padding, "dilation": dilation}
    ref = sparse_conv2d_reference(x, packed, bias, **kw_args)
    abs_packed = CsrConv2dWeight(packed.row_ptr, packed.col_idx, np.abs(packed.values), packed.shape)
    bound = sparse_conv2d_reference(np.abs(x), abs_packed, None if bias is None else np.abs(bias), **kw_args)
    tol = 2e-6 * bound + 1e-6 + (1e-3 * np.abs(ref) if dtype == "f16" else 0)
    assert np.all(np.abs(y - ref) <= tol), f"max error {np.abs(y - ref).max()}"
    if sparsity == 1.0:
        np.testing.assert_array_equal(y, np.broadcast_to(bias[None, :, None, None], y.shape))


def test_generated_code_has_one_ffma_per_nonzero_and_one_load_per_used_tap():
    rng = np.random.default_rng(0)
    weight = _weight(rng, (16, 8, 3, 3), 0.9)
    gen = sc.generate(weight, 12, 12, padding=(1, 1), tiling=sc.Tiling(4, 12, 8, 8))
    assert len(re.findall(r"fmaf\(v, ", gen.source)) == gen.nnz == np.count_nonzero(weight)
    used = sum(bool(weight[g * 8:(g + 1) * 8, ci, r, s].any()) for g in range(2) for ci in range(8)
               for r in range(3) for s in range(3))
    assert len(re.findall(r"v = tile\[", gen.source)) == gen.tap_loads == used
    assert gen.launch(3) == ((3, 2, 3), (48, 1, 1))
    # every immediate is the float32 weight, exactly
    vals = [float.fromhex(v[:-1]) for v in re.findall(r"fmaf\(v, (\S+), ", gen.source)]
    assert sorted(vals) == sorted(weight[weight != 0].astype(float).tolist())


def test_same_layer_same_digest_other_weights_other_digest():
    w = _weight(np.random.default_rng(1), (4, 3, 3, 3), 0.5)
    a, b = sc.generate(w, 8, 8, padding=(1, 1)), sc.generate(w.copy(), 8, 8, padding=(1, 1))
    w2 = w.copy()
    w2[w2 != 0] *= 2
    assert a.digest == b.digest != sc.generate(w2, 8, 8, padding=(1, 1)).digest
    assert a.digest != sc.generate(w, 8, 8, padding=(1, 1), half=False).digest


def test_default_tiling_for_the_benchmark_layer():
    t = sc.default_tiling((56, 56), 64, 64)
    assert t == sc.Tiling(th=1, tw=32, g=8, cc=64, gpb=8) and t.threads == 256  # all 8 groups share one tile
    assert 3 * 34 * 4 * t.cc <= sc.SMEM_BUDGET  # 3-row haloed tile of 34 columns x all 64 channels: one step
    cands = sc.candidate_tilings((56, 56), 64, 64)
    assert cands[0] == t and len(set(cands)) == len(cands) == 3 and [c.g for c in cands] == [8, 16, 64]
    assert all(c.threads <= 512 and (c.th * c.tw) % 32 == 0 for c in cands)
    with pytest.raises(KernelError, match="multiple of 32"):
        sc.generate(np.ones((8, 2, 3, 3), np.float32), 8, 8, padding=(1, 1), tiling=sc.Tiling(2, 5, 4, 2, 2))


def test_bad_geometry_is_a_clear_error():
    with pytest.raises(PackingError, match="does not fit"):
        sc.generate(np.ones((2, 2, 5, 5), np.float32), 3, 3)
    with pytest.raises(KernelError, match="Cout, C, KH, KW"):
        sc.generate(np.ones((2, 2), np.float32), 3, 3)


@pytest.mark.gpu
def test_generated_conv_on_gpu_matches_cudnn(cuda, tmp_path, monkeypatch):
    import torch
    import torch.nn.functional as F

    monkeypatch.setenv("EDGEC_KERNEL_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    w = _weight(rng, (64, 64, 3, 3), 0.9)  # the benchmark layer, batch 1 and 8
    bias = torch.from_numpy(rng.standard_normal(64).astype(np.float32)).to(cuda)
    cands = sc.candidate_tilings((56, 56), 64, 64)  # G = 8 (default) and 64 (two nvcc runs, ~3 s each)
    kernels = [sc.SparseConvKernel(sc.generate(w, 56, 56, padding=(1, 1), tiling=t)) for t in (cands[0], cands[-1])]
    for n in (1, 8):
        x = torch.randn(n, 64, 56, 56, device=cuda, dtype=torch.float16)
        ref = F.conv2d(x.float(), torch.from_numpy(w).to(cuda), bias, padding=1)
        for k in kernels:
            y = k(x, bias)
            torch.cuda.synchronize()
            err = float((y.float() - ref).abs().max() / ref.abs().max())
            assert y.dtype == torch.float16 and y.shape == ref.shape and err < 2e-3, (n, k.gen.tiling, err)


@pytest.mark.gpu
def test_generated_conv_on_gpu_strided_fp32(cuda, tmp_path, monkeypatch):
    import torch
    import torch.nn.functional as F

    monkeypatch.setenv("EDGEC_KERNEL_CACHE", str(tmp_path))
    w = _weight(np.random.default_rng(3), (12, 5, 3, 3), 0.7)
    x = torch.randn(2, 5, 17, 23, device=cuda)
    k = sc.SparseConvKernel(sc.generate(w, 17, 23, stride=(2, 1), padding=(1, 2), dilation=(1, 2), half=False))
    y = k(x)
    ref = F.conv2d(x, torch.from_numpy(w).to(cuda), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    torch.cuda.synchronize()
    assert y.shape == ref.shape and float((y - ref).abs().max()) < 1e-4
    with pytest.raises(KernelError, match="takes"):
        k(x.half())


def test_sparse_conv2d_module_generates_one_kernel_per_input_size(monkeypatch):
    import torch

    from edgec.kernels.modules import SparseConv2d

    made = []

    class FakeKernel:
        def __init__(self, gen):
            made.append(gen)
            self.gen = gen

    monkeypatch.setattr(sc, "SparseConvKernel", FakeKernel)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, stride=(2, 1))
    with torch.no_grad():
        conv.weight[conv.weight.abs() < 0.1] = 0
    m = SparseConv2d.from_conv(conv)
    k1 = m.generated(10, 12, True)
    assert m.generated(10, 12, True) is k1 and len(made) == 1  # cached per module
    assert m.generated(10, 12, False) is not k1 and m.generated(9, 12, True).gen.out_hw == (5, 12)
    assert k1.gen.nnz == int((conv.weight != 0).sum()) and k1.gen.half and k1.gen.out_hw == (5, 12)
    with torch.no_grad():
        m.values.mul_(2)  # weights edited in place: a new kernel
    assert m.generated(10, 12, True) is not k1
    monkeypatch.setattr(SparseConv2d, "CODEGEN_MAX_NNZ", 3)
    assert m.generated(10, 12, True) is None  # too many nonzeros to specialise: the CSR kernel runs


@pytest.mark.gpu
def test_sparse_conv2d_module_on_gpu(cuda, tmp_path, monkeypatch):
    import torch

    from edgec.kernels.modules import SparseConv2d

    monkeypatch.setenv("EDGEC_KERNEL_CACHE", str(tmp_path))
    conv = torch.nn.Conv2d(16, 24, 3, padding=1).to(cuda)
    with torch.no_grad():
        conv.weight[torch.rand_like(conv.weight) < 0.85] = 0
    m = SparseConv2d.from_conv(conv).to(cuda)
    x = torch.randn(2, 16, 20, 30, device=cuda)
    with torch.no_grad():
        ref = conv(x)
        for xin in (x, x.half()):
            y = m(xin)
            assert y.dtype == xin.dtype and float((y.float() - ref).abs().max() / ref.abs().max()) < 2e-3

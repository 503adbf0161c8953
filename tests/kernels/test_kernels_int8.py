"""The INT8 mmvq kernel (kernels/int8_gemv_mmvq.cu) on the CPU emulator, against the numpy reference.

Shapes hit: every MB variant (1, 2, 4, 8, 16), M not a multiple of MB, M > 16 (rows walked 16 at a time), N not a
multiple of the rows per block (clamped loads), K not a multiple of 16 or 8 (scalar x loads, padded weights), K
past one 512-byte warp stretch and past one shared-memory chunk (KC = 16384 / MB bytes), fp16 and fp32 x.
The launch geometry is the one :mod:`edgec.kernels.int8` uses.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgec.kernels import int8
from edgec.kernels.loader import kernel_dir
from edgec.kernels.packing import quantize_int8_weight
from tests.kernels.emu_drivers import build_emulator


@pytest.fixture(scope="module")
def emu8(tmp_path_factory):
    return build_emulator(tmp_path_factory.mktemp("int8-emu"),
                          {"int8": kernel_dir() / "cpu_harness" / "int8_gemv_mmvq_main.cpp"})


def _case(m, n, k, seed, x_scale=0.02):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32)
    if n > 2:
        w[2] = 0.0  # an all-zero row: scale 0
    packed = quantize_int8_weight(w)
    x = (rng.standard_normal((m, k)) * 2).astype(np.float32)
    # exact ties of the unrounded quantity and values past the clip
    x.flat[: min(x.size, 6)] = (np.array([0.5, 1.5, 2.5, -0.5, -1.5, 300.0]) * x_scale)[: min(x.size, 6)]
    return packed, x


# (M, N, K)
SHAPES = [(1, 7, 100), (1, 40, 1100), (2, 33, 64), (3, 9, 130), (5, 17, 520), (8, 5, 24), (16, 9, 1100),
          (20, 5, 40)]


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"M{m}-N{n}-K{k}" for m, n, k in SHAPES])
def test_mmvq_matches_reference(emu8, shape, dtype):
    m, n, k = shape
    packed, x = _case(m, n, k, seed=m * 1000 + n * 10 + k)
    if dtype == "f16":
        x = x.astype(np.float16).astype(np.float32)  # what the kernel sees
    q16 = int8.pad_rows(packed.q, k)
    k16 = q16.shape[1]
    bias = np.random.default_rng(k).standard_normal(n).astype(np.float32) if m % 2 else None
    x_scale = 0.02
    entry, grid, block = int8.mmvq_launch(m, n, half=dtype == "f16")
    inputs = {"x": x.astype(np.float16) if dtype == "f16" else x, "wq": q16, "w_scales": packed.scales}
    if bias is not None:
        inputs["bias"] = bias
    out_dtype = np.float16 if dtype == "f16" else np.float32
    y = emu8.run("int8", entry, inputs, {"y": (out_dtype, m * n)}, M=m, N=n, K=k, K16=k16,
                 inv_scale=repr(float(int8.inverse_scale(x_scale))), x_scale=repr(float(np.float32(x_scale))),
                 has_bias=int(bias is not None), grid=grid, block=block)["y"].reshape(m, n)
    ref = int8.linear_reference(x, q16, packed.scales, x_scale, bias)
    if dtype == "f16":
        np.testing.assert_allclose(y.astype(np.float32), ref.astype(np.float16).astype(np.float32), rtol=1e-3,
                                   atol=1e-3)
    else:
        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    if n > 2:  # the zeroed weight row gives exactly its bias
        assert np.all(y[:, 2].astype(np.float32) == (0.0 if bias is None else bias[2].astype(out_dtype)))


def test_launch_geometry():
    assert int8.mmvq_launch(1, 4096, True) == ("int8_mmvq_f16_mb1", (256, 1, 1), (256, 1, 1))
    assert int8.mmvq_launch(3, 4096, False) == ("int8_mmvq_f32_mb4", (128, 1, 1), (256, 1, 1))
    assert int8.mmvq_launch(40, 100, True) == ("int8_mmvq_f16_mb16", (4, 3, 1), (256, 1, 1))
    assert int8.quantize_launch(5, 4112, True) == ("int8_quantize_f16", (3, 5, 1), (256, 1, 1))
    assert int8.use_int_mm(17, 4096) and not int8.use_int_mm(16, 4096) and not int8.use_int_mm(64, 4095)
    assert int8.pad16(1) == 16 and int8.pad16(4096) == 4096


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_quantize_kernel_matches_reference(emu8, dtype):
    m, k = 3, 37  # K16 = 48: a zero tail; K odd: the scalar path
    _, x = _case(m, 4, k, seed=5)
    if dtype == "f16":
        x = x.astype(np.float16).astype(np.float32)
    k16 = int8.pad16(k)
    entry, grid, block = int8.quantize_launch(m, k16, half=dtype == "f16")
    out = emu8.run("int8", entry, {"x": x.astype(np.float16) if dtype == "f16" else x}, {"xq": (np.int8, m * k16)},
                   M=m, K=k, K16=k16, inv_scale=repr(float(int8.inverse_scale(0.02))), grid=grid, block=block)
    xq = out["xq"].reshape(m, k16)
    np.testing.assert_array_equal(xq, int8.quantize_activation(x, 0.02))
    assert not xq[:, k:].any() and xq[0, 5] == 127  # the tail is zero; 300 * scale clips to 127


def test_reference_is_the_w8a8_product():
    packed, x = _case(4, 6, 50, seed=1)
    q16 = int8.pad_rows(packed.q, 50)
    ref = int8.linear_reference(x, q16, packed.scales, 0.02)
    xq = int8.quantize_activation(x, 0.02)[:, :50].astype(np.float64) * 0.02
    w = packed.q[:, :50].astype(np.float64) * packed.scales[:, None]
    np.testing.assert_allclose(ref, xq @ w.T, rtol=1e-5, atol=1e-5)


def test_op_marshals_the_c_signature(monkeypatch):
    """ops.int8_linear without a GPU: each launch's prepare() format and arguments match the extern "C" signature."""
    import torch

    from edgec.kernels import ops
    from tests.kernels.test_kernels_ops import signatures

    calls = []

    def launch(file, entry, arg_format, grid, block, *args):
        kinds = signatures(file)[entry]
        assert arg_format == "".join({"ptr": "P", "int": "i", "float": "f"}[k] for k in kinds), entry
        assert [type(a) for a in args] == [{"ptr": int, "int": int, "float": float}[k] for k in kinds], entry
        calls.append((entry, args, grid, block))

    monkeypatch.setattr(ops, "launch", launch)
    monkeypatch.setattr(ops, "_check_input", lambda x, dtypes, what: x.detach().contiguous())  # CPU stand-ins
    packed = quantize_int8_weight(np.random.default_rng(0).standard_normal((40, 30)))
    w = int8.device_weight(packed, "cpu")
    assert tuple(w.q16.shape) == (40, 32) and not w.q16[:, 30:].any()
    y = ops.int8_linear(torch.randn(2, 3, 30).half(), w, 0.05, torch.ones(40))
    (entry, args, grid, block), = calls
    assert entry == "int8_mmvq_f16_mb8" and y.shape == (2, 3, 40) and y.dtype == torch.float16
    assert args[3] == float(np.float32(1) / np.float32(0.05)) and args[4] == float(np.float32(0.05))
    assert args[7:] == (6, 40, 30, 32) and args[1] == w.q16.data_ptr() and grid == (2, 1, 1)
    calls.clear()
    y = ops.int8_linear(torch.randn(20, 30), w, 0.05)  # m > 16, N % 8 == 0: quantize + torch._int_mm
    (entry, args, grid, block), = calls
    assert entry == "int8_quantize_f32" and args[2:] == (float(np.float32(1) / np.float32(0.05)), 20, 30, 32)
    assert y.shape == (20, 40) and y.dtype == torch.float32
    with pytest.raises(int8.KernelError, match="x_scale"):
        ops.int8_linear(torch.randn(1, 30), w, 0.0)
    with pytest.raises(int8.KernelError, match="features"):
        ops.int8_linear(torch.randn(1, 31), w, 0.1)
    monkeypatch.undo()
    with pytest.raises(int8.KernelError, match="CUDA"):
        ops.int8_linear(torch.randn(1, 30), w, 0.1)


@pytest.mark.gpu
@pytest.mark.parametrize("m,n,k", [(1, 4096, 4096), (3, 100, 1000), (16, 64, 48), (20, 64, 4096), (64, 72, 520),
                                   (33, 7, 64)])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_int8_linear_on_gpu(cuda, m, n, k, dtype):
    import torch

    from edgec.kernels import ops

    packed, x = _case(m, n, k, seed=m + n + k)
    xt = torch.from_numpy(x).to(cuda, getattr(torch, dtype))
    x = xt.float().cpu().numpy()  # the values the kernel sees
    bias = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    w = int8.device_weight(packed, cuda)
    y = ops.int8_linear(xt, w, 0.02, torch.from_numpy(bias).to(cuda))
    assert y.dtype == xt.dtype and y.shape == (m, n)
    ref = int8.linear_reference(x, int8.pad_rows(packed.q, k), packed.scales, 0.02, bias)
    rtol = 2e-3 if dtype == "float16" else 1e-5
    np.testing.assert_allclose(y.float().cpu().numpy(), ref, rtol=rtol, atol=rtol * np.abs(ref).max())

"""The pycuda path on a real GPU against the numpy references (skipped, with the reason, elsewhere)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

from edgec.kernels import int8, ops
from edgec.kernels.modules import LowBitLinear, SparseConv2d, convert
from edgec.kernels.packing import (int8_activation_scale, int8_linear_reference, lowbit_linear_reference,
                                   pack_csr_conv2d, pack_lowbit, quantize_int8_weight, sparse_conv2d_reference)

pytestmark = pytest.mark.gpu


def _close(actual: torch.Tensor, expected: np.ndarray, rtol: float, atol: float) -> None:
    np.testing.assert_allclose(actual.float().cpu().numpy(), expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape,conv", [((2, 16, 15, 17), dict(stride=1, padding=1, dilation=1)),
                                        ((3, 8, 32, 31), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2))),
                                        ((1, 64, 14, 14), dict(stride=2, padding=0, dilation=1))])
def test_sparse_conv2d_on_gpu(cuda, shape, conv, dtype):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((24, shape[1], 3, 3)).astype(np.float32)
    w[rng.random(w.shape) < 0.8] = 0
    w[5] = 0
    x = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    xt = torch.from_numpy(x).to(cuda, dtype)
    y = ops.sparse_conv2d(xt, pack_csr_conv2d(w), torch.from_numpy(b), **conv)
    assert y.dtype == dtype and y.is_cuda
    ref = sparse_conv2d_reference(xt.float().cpu().numpy(), pack_csr_conv2d(w), b, **conv)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    _close(y, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("bits", [8, 4, 2, 1])
@pytest.mark.parametrize("m", [1, 3, 16])
def test_lowbit_linear_on_gpu(cuda, bits, m, dtype):
    rng = np.random.default_rng(bits * 10 + m)
    w = rng.standard_normal((300, 1000)).astype(np.float32)
    p = pack_lowbit(w, bits)
    x = rng.standard_normal((m, 1000)).astype(np.float32)
    b = rng.standard_normal(300).astype(np.float32)
    xt = torch.from_numpy(x).to(cuda, dtype)
    y = ops.lowbit_linear(xt, p, torch.from_numpy(b))
    ref = lowbit_linear_reference(xt.float().cpu().numpy(), p, b)
    scale = np.abs(ref).max()
    tol = 1e-4 if dtype == torch.float32 else 1e-2
    _close(y, ref, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("m,n,k", [(1, 64, 256), (7, 33, 130), (64, 96, 1000)])
def test_int8_linear_on_gpu(cuda, m, n, k):
    rng = np.random.default_rng(m + n + k)
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    p, s = quantize_int8_weight(w), int8_activation_scale(x)
    y = ops.int8_linear(torch.from_numpy(x).to(cuda), p, s, torch.from_numpy(b))
    # the kernels quantize x with a multiply by 1/x_scale: int8.linear_reference is their exact reference
    _close(y, int8.linear_reference(x, int8.pad_rows(p.q, k), p.scales, s, b), rtol=1e-5, atol=1e-5)
    _close(y, int8_linear_reference(x, p, s, b), rtol=1e-2, atol=1e-2)  # and W8A8 with a division, nearly


def test_launch_under_a_side_stream_is_ordered(cuda):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 512)).astype(np.float32)
    p = pack_lowbit(w, 4)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        x = torch.randn(1, 512, device=cuda) * 3  # produced on the side stream
        y = ops.lowbit_linear(x, p) + 1           # consumed on the side stream after the kernel
    side.synchronize()
    _close(y, lowbit_linear_reference(x.cpu().numpy(), p) + 1, rtol=1e-4, atol=1e-3)


def test_modules_and_convert_on_gpu(cuda):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, padding=1)
    with torch.no_grad():
        conv.weight[torch.rand_like(conv.weight) < 0.85] = 0
    lin = nn.Linear(64, 10)
    x = torch.randn(2, 8, 12, 12)
    sc, lb = SparseConv2d.from_conv(conv), LowBitLinear.from_linear(lin, 4)
    torch.testing.assert_close(sc.to(cuda)(x.to(cuda)).cpu(), sc.cpu()(x), rtol=1e-4, atol=1e-4)
    xl = torch.randn(5, 64)
    torch.testing.assert_close(lb.to(cuda)(xl.to(cuda)).cpu(), lb.cpu()(xl), rtol=1e-4, atol=1e-4)
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(16 * 144, 10)).eval()
    converted, report = convert(model, min_sparsity=0.5, bits=8)
    assert [r["action"] for r in report] == ["swapped", "swapped"]
    converted = converted.to(cuda)
    with torch.no_grad():
        torch.testing.assert_close(converted(x.to(cuda)).cpu(), converted.cpu()(x), rtol=1e-3, atol=1e-3)


def test_cpu_tensors_are_rejected_with_a_hint(cuda):
    p = pack_lowbit(np.ones((4, 8), np.float32), 8)
    with pytest.raises(ops.KernelError, match="CUDA tensors"):
        ops.lowbit_linear(torch.ones(1, 8), p)


def _lowbit_bound_check(y: torch.Tensor, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> None:
    """y against an FP32 reference on the same (fp16-exact) inputs: fp16 HFMA2 error bound + fp16 output."""
    ref = torch.nn.functional.linear(x.float(), w, b)
    bound = x.float().abs() @ w.abs().T + (0 if b is None else b.abs())
    err = (y.float() - ref).abs()
    assert bool((err <= 3e-3 * bound + 2e-3 * ref.abs() + 1e-3).all()), f"max error {err.max().item()}"


@functools.lru_cache(maxsize=4)
def _llm_layer(bits: int, n: int, k: int) -> tuple[LowBitLinear, torch.Tensor]:
    """A LowBitLinear on the GPU and its dequantized FP32 weight (numpy packing of big matrices takes
    seconds of the GPU session: built once per (bits, shape) and shared across batch sizes)."""
    from edgec.kernels.packing import dequantize_gemv, repack_gemv

    rng = np.random.default_rng(bits * 7 + n)
    g = repack_gemv(pack_lowbit((rng.standard_normal((n, k)) * 0.02).astype(np.float32), bits))
    w = torch.from_numpy(dequantize_gemv(g)).cuda()  # exactly the weights the kernel uses
    return LowBitLinear(g, torch.from_numpy(rng.standard_normal(n).astype(np.float32))).cuda(), w


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 8, 16])
def test_batched_gemv_llm_shapes_fp16(cuda, bits, m):
    # batch 1: the 11008x4096 for W4/W1, 4096x4096 otherwise; batches: 1024 rows x K 4096
    n, k = (11008, 4096) if m == 1 and bits in (4, 1) else (4096, 4096) if m == 1 else (1024, 4096)
    lb, w = _llm_layer(bits, n, k)
    for _ in range(2):  # fresh random inputs every call
        x = torch.randn(m, k, device=cuda, dtype=torch.float16)
        y = lb(x)
        assert y.dtype == torch.float16 and y.shape == (m, n)
        _lowbit_bound_check(y, x, w, lb.bias)


def test_lowbit_module_caches_pointers_and_orders_with_every_stream(cuda):
    torch.manual_seed(3)
    lb = LowBitLinear.from_linear(nn.Linear(1000, 300), 4).to(cuda)
    x = torch.randn(3, 1000, device=cuda, dtype=torch.float16)
    y0 = lb(x)
    kernel = lb.gemv()
    assert lb(x) is not y0 and lb.gemv() is kernel  # built once, reused
    assert kernel.words.data_ptr() == lb.words.data_ptr()  # no weight copy
    with ops.kernel_stream():  # torch and the kernels on one stream: no joins
        y1 = lb(x * 1) + 0
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        xs = x * 1  # produced on the side stream
        y2 = lb(xs) + 0
    side.synchronize()
    torch.cuda.synchronize()
    torch.testing.assert_close(y1, y0)
    torch.testing.assert_close(y2, y0)
    lb.cpu().to(cuda)  # the buffers move: the cached pointers follow them
    assert lb.gemv() is not kernel
    torch.testing.assert_close(lb(x), y0)


@pytest.mark.parametrize("m", [2, 8])  # CUDA-core GEMV / tensor-core kernel
def test_cuda_graph_mode_replays_a_converted_model(cuda, m):
    from edgec.kernels.modules import CudaGraphed

    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    converted, report = convert(model, bits=4)
    assert [r["action"] for r in report] == ["swapped"] * 3
    converted = converted.to(cuda).half()
    x = torch.randn(m, 512, device=cuda, dtype=torch.float16)
    with torch.no_grad():
        eager = converted(x)
        graphed = CudaGraphed(converted, x)
        torch.testing.assert_close(graphed(x), eager)
        x2 = torch.randn(m, 512, device=cuda, dtype=torch.float16)
        torch.testing.assert_close(graphed(x2).clone(), converted(x2))
    with pytest.raises(ops.KernelError, match="captured for"):
        graphed(torch.randn(m + 1, 512, device=cuda, dtype=torch.float16))


def test_lowbit_end_to_end_host_time_per_call(cuda):
    """Host wall time per call of a 4096x4096 W4 layer at batch 1 (printed; the old path took ~75 us)."""
    import time

    lb = LowBitLinear(pack_lowbit((torch.randn(4096, 4096) * 0.02).numpy(), 4)).to(cuda)
    x = torch.randn(1, 4096, device=cuda, dtype=torch.float16)
    results = {}
    for name, ctx in (("default stream (event joins)", torch.cuda.stream(torch.cuda.current_stream())),
                      ("kernel_stream (no joins)", ops.kernel_stream())):
        with ctx:
            for _ in range(20):
                lb(x)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(2000):
                lb(x)
            torch.cuda.synchronize()
        results[name] = (time.perf_counter() - t0) / 2000 * 1e6
    print("end-to-end us per call:", {k: round(v, 1) for k, v in results.items()})
    assert results["kernel_stream (no joins)"] < 40, results  # aim <= 10 us; 40 catches a regression to the old path

"""The pycuda path on a real GPU against the numpy references (skipped, with the reason, elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgec.kernels import ops
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
    _close(y, int8_linear_reference(x, p, s, b), rtol=1e-5, atol=1e-5)


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

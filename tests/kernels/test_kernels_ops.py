"""The torch-facing ops marshal their arguments exactly as the kernels' C signatures expect.

Without a GPU the launch itself cannot happen, so ``ops.launch`` is replaced by a fake that checks
the ``Function.prepare`` format against the ``extern "C"`` signature (read from the preprocessed .cu
file: ``P`` for pointers, ``i`` for int, ``f`` for float) and every argument's Python type (ints for
pointers, 0 for NULL); grid/block are the documented launch shapes, and the integer arguments carry
the right sizes. ``launch`` itself (the stream logic) is tested with fake streams and events.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from edgec.kernels import ops
from edgec.kernels.loader import kernel_dir
from edgec.kernels.packing import pack_csr_conv2d, pack_lowbit, quantize_int8_weight

# __launch_bounds__'s arguments may nest parentheses: skip them lazily up to "<name>(" (an identifier right
# after a closing parenthesis only occurs there)
SIGNATURE = re.compile(r'extern\s+"C"\s+void\s+(?:__launch_bounds__\s*\(.*?\)\s*)?(\w+)\s*\(([^)]*)\)', re.S)


@functools.lru_cache(maxsize=None)
def signatures(file: str) -> dict[str, list[str]]:
    """entry -> parameter kinds ('ptr', 'int', 'float'), from the preprocessed source."""
    gxx = shutil.which("g++")
    if not gxx:
        pytest.skip("g++ not found (used as the C preprocessor)")
    src = kernel_dir() / f"{file}.cu"
    text = subprocess.run([gxx, "-E", "-P", "-x", "c++", "-DEDGEC_CPU_EMU", "-D__global__=", "-D__restrict__=",
                           "-I", str(kernel_dir()), str(src)], capture_output=True, text=True, check=True).stdout
    out = {}
    for name, params in SIGNATURE.findall(text):
        kinds = []
        for p in params.split(","):
            p = p.strip()
            kind = "ptr" if "*" in p else "int" if p.startswith("int ") else "float" if p.startswith("float ") else p
            kinds.append(kind)
        out[name] = kinds
    return out


def test_sparse_conv2d_arguments(fake_launch):
    w = np.random.default_rng(0).standard_normal((5, 3, 3, 3)).astype(np.float32)
    w[w < 0.5] = 0
    x = torch.randn(2, 3, 9, 8)
    y = ops.sparse_conv2d(x, pack_csr_conv2d(w), torch.ones(5), stride=(2, 1), padding=1, dilation=(1, 2))
    (entry, args, grid, block), = fake_launch
    assert entry == "sparse_conv2d_csr_f32" and y.shape == (2, 5, 5, 6)
    assert list(args[6:]) == [3, 9, 8, 5, 3, 3, 5, 6, 2, 1, 1, 1, 1, 2]
    assert grid == (1, 5, 2) and block == (128, 1, 1)
    assert args[0] == x.data_ptr() and args[5] == y.data_ptr() and args[4] != 0
    ops.sparse_conv2d(x.half(), pack_csr_conv2d(w))  # no bias: NULL
    assert fake_launch[-1][0] == "sparse_conv2d_csr_f16" and fake_launch[-1][1][4] == 0


@pytest.fixture
def fake_launch(monkeypatch):
    """Replaces ops.launch: checks the prepare() format against the C signature and the arguments' types."""
    calls: list = []

    def launch(file, entry, arg_format, grid, block, *args):
        kinds = signatures(file)[entry]
        assert arg_format == "".join({"ptr": "P", "int": "i", "float": "f"}[k] for k in kinds), (entry, arg_format)
        assert len(args) == len(kinds)
        for a, letter in zip(args, arg_format):
            assert type(a) is (float if letter == "f" else int), (entry, a, letter)
        assert len(grid) == 3 and len(block) == 3 and all(isinstance(g, int) and g > 0 for g in grid + block)
        calls.append((entry, args, grid, block))

    monkeypatch.setattr(ops, "launch", launch)
    monkeypatch.setattr(ops, "_check_input", lambda x, dtypes, what: x.detach().contiguous())
    return calls


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
def test_lowbit_linear_arguments(fake_launch, bits):
    p = pack_lowbit(np.random.default_rng(bits).standard_normal((10, 70)), bits)
    kernel = ops.LowBitGemv(p, device="cpu")  # CPU tensors stand in for device memory here
    y = kernel(torch.randn(1, 70))
    entry, args, grid, block = fake_launch[-1]
    kvec = -(-70 // (128 // bits))
    assert entry == f"lbgemv_f32_w{bits}_m1" and grid == (1, 1, 1) and block == (128, 1, 1) and y.shape == (1, 10)
    assert list(args[5:]) == [1, 10, kvec, 32] and args[3] == 0  # no bias: NULL
    assert args[1] == kernel.words.data_ptr() and args[2] == kernel.scales.data_ptr() and args[4] == y.data_ptr()
    kernel = ops.LowBitGemv(p, torch.zeros(10), device="cpu")
    y = kernel(torch.randn(1, 3, 70).half())
    entry, args, grid, _ = fake_launch[-1]
    assert entry == f"lbgemv_f16_w{bits}_m4" and grid == (1, 1, 1) and y.shape == (1, 3, 10)  # 3 rows: MB 4
    assert args[4] == y.data_ptr() and args[5] == 3 and args[3] == kernel.bias.data_ptr()
    y = kernel(torch.randn(2, 3, 70))  # fp32: 6 rows on CUDA cores, MB 8 (1 bit: MB 4, two blocks along y)
    mb = 4 if bits == 1 else 8
    assert fake_launch[-1][0] == f"lbgemv_f32_w{bits}_m{mb}" and fake_launch[-1][2] == (1, 6 // mb + (6 % mb > 0), 1)
    assert kernel.words.shape == (16, 4 * kvec)  # rows padded to 16


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_fp16_batches_from_4_rows_take_the_tensor_core_kernel(fake_launch, bits):
    from edgec.kernels.packing import repack_gemv, repack_mma

    p = pack_lowbit(np.random.default_rng(bits).standard_normal((20, 300)), bits)
    kernel = ops.LowBitGemv(p, device="cpu")
    kernel(torch.randn(3, 300).half())
    assert fake_launch[-1][0] == f"lbgemv_f16_w{bits}_m4"  # 3 rows: CUDA cores
    y = kernel(torch.randn(2, 9, 300).half())  # 18 rows: two m16 launches
    words, kv = kernel._mma
    np.testing.assert_array_equal(words.numpy().view(np.uint32), repack_mma(repack_gemv(p)))  # GPU == numpy
    (e1, a1, g1, b1), (e2, a2, g2, _) = fake_launch[-2:]
    assert e1 == e2 == f"lbmma_f16_w{bits}" and g1 == g2 == (2, 1, 1) and b1 == (256, 1, 1) and y.shape == (2, 9, 20)
    assert a1[1] == a2[1] == words.data_ptr() and list(a1[5:]) == [16, 20, kv] and list(a2[5:]) == [2, 20, kv]
    kp = kv * 16 * (32 // bits)
    assert a2[0] - a1[0] == 16 * kp * 2 and a2[4] - a1[4] == 16 * 20 * 2  # rows 16.. of x and y
    kernel(torch.randn(5, 300))
    assert fake_launch[-1][0] == f"lbgemv_f32_w{bits}_m8"  # fp32 x stays on CUDA cores (8/4/2 bits: MB 8)


def test_int8_linear_arguments(fake_launch):
    p = quantize_int8_weight(np.random.default_rng(0).standard_normal((40, 30)))
    y = ops.int8_linear(torch.randn(3, 30), p, 0.05)  # one launch: x is quantized inside the mmvq kernel
    (entry, args, grid, block), = fake_launch
    assert entry == "int8_mmvq_f32_mb4" and y.shape == (3, 40) and y.dtype == torch.float32
    assert args[3] == float(np.float32(1) / np.float32(0.05)) and args[4] == float(np.float32(0.05))
    assert args[7:] == (3, 40, 30, 32) and grid == (2, 1, 1) and block == (256, 1, 1)  # K padded to 16 bytes
    with pytest.raises(ops.KernelError, match="x_scale"):
        ops.int8_linear(torch.randn(3, 30), p, 0.0)


def test_shape_errors_are_edgec_errors(fake_launch):
    with pytest.raises(ops.KernelError, match="features"):
        ops.LowBitGemv(pack_lowbit(np.ones((2, 8)), 4), device="cpu")(torch.randn(1, 7))
    with pytest.raises(ops.KernelError, match=r"\[N, 3, H, W\]"):
        ops.sparse_conv2d(torch.randn(1, 4, 8, 8), pack_csr_conv2d(np.ones((2, 3, 3, 3))))



def test_launch_joins_streams_only_off_the_shared_stream(monkeypatch):
    """ops.launch: one prepared_async_call on the shared stream; event joins only under another torch stream."""
    log: list = []

    class Stream:
        def __init__(self, handle):
            self.cuda_stream = handle

        def wait_event(self, ev):
            log.append(("wait", self.cuda_stream, ev.name))

    class Event:
        def __init__(self, name):
            self.name = name

        def record(self, stream):
            log.append(("record", self.name, stream.cuda_stream))

    class Fn:
        def prepared_async_call(self, grid, block, stream, *args):
            log.append(("launch", stream, grid, block, args))

    shared, other = Stream(7), Stream(9)
    current = [shared]
    fake_torch = type("T", (), {"cuda": type("C", (), {"current_stream": staticmethod(lambda: current[0])})})
    monkeypatch.setattr(ops, "_torch", lambda: fake_torch)
    monkeypatch.setattr(ops, "prepared_function", lambda file, entry, fmt: Fn())
    monkeypatch.setattr(ops, "shared_stream", lambda: ("pycuda-stream", shared))
    monkeypatch.setattr(ops, "_join_events", lambda: (Event("in"), Event("out")))
    ops.launch("f", "e", "Pi", (1, 1, 1), (32, 1, 1), 123, 4)
    assert log == [("launch", "pycuda-stream", (1, 1, 1), (32, 1, 1), (123, 4))]
    log.clear()
    current[0] = other
    ops.launch("f", "e", "Pi", (1, 1, 1), (32, 1, 1), 123, 4)
    assert log == [("record", "in", 9), ("wait", 7, "in"), ("launch", "pycuda-stream", (1, 1, 1), (32, 1, 1), (123, 4)),
                   ("record", "out", 7), ("wait", 9, "out")]

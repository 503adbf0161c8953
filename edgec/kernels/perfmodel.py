"""A small static performance model of edgec's kernels and of the dense baselines (no GPU needed).

For each benchmark case it counts the bytes a kernel must move through DRAM and the instructions it must issue
per output, then predicts ``time = max(bytes / bandwidth, instructions / issue rate) + fixed`` -- a roofline
with a fixed per-launch cost. The bandwidth is the device's *measured* device-to-device copy bandwidth (bytes
read + written per second; 3.93 TB/s on the H200 we measured), the issue rates are the SM's documented
per-clock throughputs. ``benchmarks/kernels.py`` prints the prediction next to each measurement, so a kernel
far slower than its model is visibly leaving performance on the table, and the goals can be judged without a GPU
("predicted") where no measurement exists.

Per-instruction counts are the kernel designs' (see the .cu headers), counted per weight or per FMA; they are
estimates of the inner loops, not of the prologue/epilogue.

Example:
    >>> predict({"op": "lowbit_linear", "bits": 4, "shape": [1, 4096, 4096]})["predicted_us"]
    4.1
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Device:
    """What the model needs of a GPU."""

    name: str
    copy_gbps: float        # measured device-to-device copy, read + write, GB/s
    sms: int
    clock_ghz: float
    fixed_us: float = 2.0   # launch + ramp-up + tail of one small kernel, device side
    # lane-operations per clock per SM
    fp32_fma: int = 128      # FFMA (HFMA2: the same count of instructions, 2 FMAs each)
    int_dp4a: int = 64       # IDP4A
    lds_lanes: int = 32      # 32-bit shared-memory loads (128 B/clk)
    issue: int = 128         # 4 schedulers x 32 lanes: any instruction

    def rate(self, per_clk_per_sm: int) -> float:
        """Lane-operations per microsecond over the whole GPU."""
        return per_clk_per_sm * self.sms * self.clock_ghz * 1e3


H200 = Device("NVIDIA H200", copy_gbps=3930.0, sms=132, clock_ghz=1.98)
ORIN_AGX = Device("Jetson AGX Orin", copy_gbps=170.0, sms=16, clock_ghz=1.3, fixed_us=4.0)

# Instructions issued per weight in the inner loop of the low-bit batched GEMV (TensorRT-LLM-style design:
# 128-bit weight loads, LOP3 / sign-flip decode to half2, HFMA2 with x kept in registers): decode cost per weight
# (independent of m) + FMA cost per weight per row of x (HFMA2 = 2 FMAs).
LOWBIT_DECODE = {8: 0.5, 4: 0.375, 2: 0.3, 1: 0.25}
LOWBIT_FMA_PER_ROW = 0.5


def _result(t_mem: float, t_issue: float, dev: Device, outputs: int, nbytes: float, instr: float) -> dict[str, Any]:
    return {"predicted_us": round(max(t_mem, t_issue) + dev.fixed_us, 2), "t_mem_us": round(t_mem, 2),
            "t_issue_us": round(t_issue, 2), "bound": "memory" if t_mem >= t_issue else "issue",
            "bytes": int(nbytes), "bytes_per_output": round(nbytes / max(outputs, 1), 1),
            "instr_per_output": round(instr / max(outputs, 1), 1), "device": dev.name}


def lowbit_linear(m: int, n: int, k: int, bits: int, dev: Device = H200) -> dict[str, Any]:
    """Weight-only low-bit linear, fp16 x/y: packed weights + fp32 scales + x + y through DRAM.

    From 4 rows of fp16 x the tensor-core kernel (``lowbit_mma_gemm.cu``) runs: the decode stays, the FMAs go to
    HMMA (not the limit at m <= 16); below that the batched GEMV does HFMA2s on CUDA cores.
    """
    nbytes = n * k * bits / 8 + 4 * n + 2 * m * k + 2 * m * n
    instr = n * k * (LOWBIT_DECODE[bits] + (0 if m >= 4 else LOWBIT_FMA_PER_ROW * m))
    return _result(nbytes / (dev.copy_gbps * 1e3), instr / dev.rate(dev.issue), dev, m * n, nbytes, instr)


def dense_linear(m: int, n: int, k: int, dev: Device = H200, elt: int = 2) -> dict[str, Any]:
    """cuBLAS FP16 GEMV/GEMM at small m: memory-bound on the fp16 weight (tensor-core math is never the limit)."""
    nbytes = elt * (n * k + m * k + m * n)
    return _result(nbytes / (dev.copy_gbps * 1e3), 0.0, dev, m * n, nbytes, 0.0)


def int8_mmvq(m: int, n: int, k: int, dev: Device = H200) -> dict[str, Any]:
    """int8_gemv_mmvq.cu: int8 weights (16-byte rows) + scales; IDP4A per 4 MACs of the padded MB rows, one
    128-bit LDS per 16 bytes x (MB rows) per warp-row group, x quantized once per block (5 instr per value)."""
    mb = next((c for c in (1, 2, 4, 8, 16) if c >= m), 16)
    rows_per_block = 8 * (2 if mb <= 2 else 4)
    blocks = -(-n // rows_per_block) * -(-m // mb)
    nbytes = n * k + 4 * n + 2 * m * k + 2 * m * n
    dp4a = mb * n * k / 4 * -(-m // mb)
    quant = 5 * blocks * mb * k
    lds = dp4a / 4 / (rows_per_block / 8)  # one LDS.128 feeds 4 dp4a x ROWS rows
    t_issue = max(dp4a / dev.rate(dev.int_dp4a), (dp4a + quant + lds) / dev.rate(dev.issue))
    return _result(nbytes / (dev.copy_gbps * 1e3), t_issue, dev, m * n, nbytes, dp4a + quant + lds)


def sparse_conv_generated(n: int, c: int, h: int, w: int, cout: int, nnz: int, tap_loads: int, oh: int, ow: int,
                          dev: Device = H200, elt: int = 2) -> dict[str, Any]:
    """sparse_codegen kernels: one FFMA per nonzero per output pixel, one LDS per used tap per pixel (summed over
    the channel groups), x read (about once, plus halo) and y written through DRAM."""
    pixels = n * oh * ow
    ffma, lds = nnz * pixels, tap_loads * pixels
    nbytes = elt * (n * c * h * w + n * cout * oh * ow)
    t_issue = max(ffma / dev.rate(dev.fp32_fma), lds / dev.rate(dev.lds_lanes), (ffma + lds) / dev.rate(dev.issue))
    return _result(nbytes / (dev.copy_gbps * 1e3), t_issue, dev, pixels * cout, nbytes, ffma + lds)


def dense_conv(n: int, c: int, h: int, w: int, cout: int, kh: int, kw: int, oh: int, ow: int,
               dev: Device = H200, tensor_tflops: float = 700.0) -> dict[str, Any]:
    """cuDNN FP16 implicit GEMM on tensor cores (~700 dense TFLOP/s achievable on H200-class parts)."""
    flops = 2 * n * cout * oh * ow * c * kh * kw
    nbytes = 2 * (n * c * h * w + n * cout * oh * ow + cout * c * kh * kw)
    return _result(nbytes / (dev.copy_gbps * 1e3), flops / (tensor_tflops * 1e6), dev, n * cout * oh * ow,
                   nbytes, flops)


def predict(case: dict[str, Any], dev: Device = H200) -> dict[str, Any]:
    """The edgec-kernel prediction for one benchmark row (``op`` + its shape fields)."""
    op = case["op"]
    if op == "lowbit_linear":
        m, n, k = case["shape"]
        return lowbit_linear(m, n, k, case["bits"], dev)
    if op == "int8_linear":
        m, n, k = case["shape"]
        if m > 16 and n % 8 == 0:  # quantize launch + torch._int_mm (IMMA, memory-bound here) + epilogue launch
            nbytes = n * k + m * k * 3 + m * n * 10
            return _result(nbytes / (dev.copy_gbps * 1e3) + 2 * dev.fixed_us, 0.0, dev, m * n, nbytes, 0.0)
        return int8_mmvq(m, n, k, dev)
    if op == "sparse_conv2d":
        n, c, h, w, cout = case["shape"][:5]
        oh, ow = case.get("out_hw", (h, w))
        return sparse_conv_generated(n, c, h, w, cout, case["nnz"], case["tap_loads"], oh, ow, dev)
    raise KeyError(f"no model for op {op!r}")


def predict_baseline(case: dict[str, Any], dev: Device = H200) -> dict[str, Any]:
    """The dense library's (cuBLAS / cuDNN FP16) prediction for the same case."""
    if case["op"] in ("lowbit_linear", "int8_linear"):
        m, n, k = case["shape"]
        return dense_linear(m, n, k, dev)
    n, c, h, w, cout, kh, kw = case["shape"]
    oh, ow = case.get("out_hw", (h, w))
    return dense_conv(n, c, h, w, cout, kh, kw, oh, ow, dev)

"""The VPMADDUBSW emulation: hand arithmetic, and S8S8 vs reduce_range/U8U8 files of a model with large activations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgec.compress.int8_cpu import choose_cpu_flavour, int8_isa
from edgec.compress.quantize import quantize_qdq
from edgec.compress.ptq_accuracy import reference_logits
from edgec.compress.saturation import predict_avx2_logits, predict_saturation, vpmaddubsw
from edgec.export.onnx import export_onnx
from edgec.export.qdq import qdq_problems


def test_vpmaddubsw_hand_values():
    # 255*127 + 255*127 = 64770 -> saturates at 32767; the negative side at -32768
    np.testing.assert_array_equal(vpmaddubsw([255, 255], [127, 127]), [32767])
    np.testing.assert_array_equal(vpmaddubsw([255, 255], [-128, -128]), [-32768])
    # 7-bit weights (reduce_range: |w| <= 64) cannot overflow: 2 * 255 * 64 = 32640
    np.testing.assert_array_equal(vpmaddubsw([255, 255, 255, 255], [64, 64, -64, -64]), [32640, -32640])
    # exact where it fits: 1*2 + 3*4, and unsigned reading of the first operand (200, not -56)
    np.testing.assert_array_equal(vpmaddubsw([1, 3, 200, 0], [2, 4, -1, 5]), [14, -200])
    with pytest.raises(ValueError, match="odd"):
        vpmaddubsw([1, 2, 3], [1, 2, 3])


@pytest.fixture(scope="module")
def big_first_layer(tmp_path_factory):
    """A conv net whose first layer sees large inputs and has large weights (post-ReLU outputs are big)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(16 * 8 * 8, 10)).eval()
    with torch.no_grad():
        model[0].weight.mul_(4.0)
        model[0].weight[:, :, 1, 1] = 1.0  # same-sign neighbouring taps: pair sums add up
    folder = tmp_path_factory.mktemp("sat")
    x = np.abs(np.random.default_rng(0).normal(size=(128, 4, 8, 8))).astype(np.float32) * 3
    return export_onnx(model, (4, 8, 8), folder / "model.onnx", exporter="torchscript"), x, folder


def test_s8s8_saturates_reduce_range_and_u8u8_do_not(big_first_layer):
    fp32, x, folder = big_first_layer
    reports = {}
    for flavour in ("s8s8", "reduce_range", "u8u8"):
        path = quantize_qdq(fp32, folder / f"{flavour}.onnx", x[:64], method="minmax", flavour=flavour)
        reports[flavour] = predict_saturation(path, x[64:], max_samples=32)
    s8 = reports["s8s8"]
    assert s8["saturates"] and s8["samples"] == 32
    assert [lay["op"] for lay in s8["layers"]] == ["Conv", "Conv", "Gemm"]
    first = s8["layers"][0]
    assert first["kernel"] == "u8s8 (VPMADDUBSW)" and first["saturated_fraction"] > 0.01 and first["output_error"] > 0
    for flavour in ("reduce_range", "u8u8"):
        assert not reports[flavour]["saturates"], reports[flavour]
        assert all(lay["saturated_fraction"] == 0 and lay["output_error"] == 0 for lay in reports[flavour]["layers"])
    assert reports["u8u8"]["layers"][0]["kernel"] == "u8u8 (VPMADDWD)"
    # reduce_range stays a symmetric INT8 file TensorRT accepts; U8U8 is ONNX Runtime's only
    assert qdq_problems(folder / "reduce_range.onnx") == []
    assert qdq_problems(folder / "u8u8.onnx") != []


def test_pairs_follow_mlas_packing(big_first_layer):
    """Every output of every quantized layer is emulated, with K padded to pairs as MLAS packs it."""
    fp32, x, folder = big_first_layer
    path = quantize_qdq(fp32, folder / "rr.onnx", x[:64], method="minmax", flavour="reduce_range")
    report = predict_saturation(path, x[:8])
    assert all(lay["pairs"] > 0 for lay in report["layers"])
    # pairs = samples * outputs * Cout * ceil(K / 2): first conv K = 3*3*4 = 36 -> 18 pairs
    assert report["layers"][0]["pairs"] == 8 * 64 * 16 * 18


def test_cpu_detection_and_flavour_choice():
    assert int8_isa({"arch": "x86_64", "flags": {"avx2": True, "avx512_vnni": False, "avx_vnni": False}}) == "x86-avx2"
    assert int8_isa({"arch": "x86_64", "flags": {"avx512_vnni": True}}) == "x86-vnni"
    assert int8_isa({"arch": "x86_64", "flags": {"avx_vnni": True}}) == "x86-vnni"
    assert int8_isa({"arch": "aarch64", "flags": {"dotprod": True}}) == "arm-dotprod"
    assert int8_isa({"arch": "riscv64", "flags": {}}) == "other"
    assert int8_isa() in ("x86-vnni", "x86-avx2", "arm-dotprod", "arm", "other")
    assert choose_cpu_flavour("auto", "x86-avx2") == "u8s8_reduce_range"
    assert choose_cpu_flavour("auto", "other") == "reduce_range"
    assert choose_cpu_flavour("auto", "x86-vnni") == "u8s8"  # VPDPBUSD: no saturation
    assert choose_cpu_flavour("auto", "arm-dotprod") == "s8s8"
    assert choose_cpu_flavour("u8u8", "x86-vnni") == "u8u8"


def test_predicted_avx2_outputs(big_first_layer):
    """No saturation (reduce_range): the prediction is the plain QDQ reference, exactly. S8S8: the
    saturated first layer moves the logits."""
    fp32, x, folder = big_first_layer
    xs = x[64:96]
    rr = quantize_qdq(fp32, folder / "p_rr.onnx", x[:64], method="minmax", flavour="reduce_range")
    np.testing.assert_array_equal(predict_avx2_logits(rr, xs), reference_logits(rr, xs))
    s8 = quantize_qdq(fp32, folder / "p_s8.onnx", x[:64], method="minmax", flavour="s8s8")
    ref, pred = reference_logits(s8, xs), predict_avx2_logits(s8, xs)
    assert pred.shape == ref.shape and np.abs(pred - ref).max() > 0.05 * np.abs(ref).max()


class _DepthwiseResidual(nn.Module):
    """conv -> depthwise conv -> 1x1 conv whose input also feeds a residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.dw = nn.Conv2d(4, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.c2, self.fc = nn.Conv2d(16, 16, 1), nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        b = torch.relu(self.dw(torch.relu(self.c1(x))))
        return self.fc(torch.relu(self.c2(b) + b).flatten(1))


def test_depthwise_and_unfused_layers_are_not_vpmaddubsw(tmp_path):
    """What ONNX Runtime really runs (checked on an AVX2-only EPYC, benchmarks/avx2_emulation_check.py):
    depthwise convs take MLAS's int16 depthwise kernel, and a conv whose input DequantizeLinear also feeds
    a residual add is not fused into QLinearConv, so it runs in float. Neither saturates."""
    torch.manual_seed(0)
    model = _DepthwiseResidual().eval()
    with torch.no_grad():
        model.dw.weight.mul_(8.0)  # large depthwise weights: as VPMADDUBSW pairs these would saturate
    x = np.abs(np.random.default_rng(0).normal(size=(64, 4, 8, 8))).astype(np.float32) * 3
    fp32 = export_onnx(model, (4, 8, 8), tmp_path / "model.onnx", exporter="torchscript")
    s8 = quantize_qdq(fp32, tmp_path / "s8.onnx", x[:32], method="minmax", flavour="s8s8")
    import onnx
    from edgec.compress.saturation import ort_float_layers
    m = onnx.load(s8)
    c2 = next(n.output[0] for n in m.graph.node if n.op_type == "Conv" and n.input[1].startswith("c2."))
    assert ort_float_layers(m) == {c2}
    report = predict_saturation(s8, x[32:], max_samples=16)
    kinds = {lay["node"]: lay["kernel"] for lay in report["layers"]}
    assert "depthwise (int16, VPMADDWD)" in kinds.values()
    assert len(report["layers"]) == 3  # c1, dw, fc; c2 runs in float
    dw = next(lay for lay in report["layers"] if lay["kernel"].startswith("depthwise"))
    assert dw["saturated_fraction"] == 0.0 and dw["output_error"] == 0.0

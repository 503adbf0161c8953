"""SparseConv2d / LowBitLinear on CPU tensors (the reference path) and convert()'s choices."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from edgec.errors import EdgecError
from edgec.kernels.modules import LowBitLinear, SparseConv2d, convert, detect_lowbit
from edgec.kernels.packing import dequantize_lowbit, pack_lowbit


def _pruned_conv(amount: float, **kw) -> nn.Conv2d:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, **kw)
    prune.l1_unstructured(conv, "weight", amount=amount)
    return conv


@pytest.mark.parametrize("kw", [{"padding": 1}, {"stride": 2, "dilation": 2, "padding": (2, 1)},
                                {"padding": "same", "bias": False}, {"padding": "valid"}])
def test_sparse_conv2d_module_matches_the_pruned_conv(kw):
    conv = _pruned_conv(0.8, **kw)
    sc = SparseConv2d.from_conv(conv)
    x = torch.randn(2, 4, 9, 10)
    torch.testing.assert_close(sc(x), conv(x), rtol=1e-5, atol=1e-5)
    assert sc.values.numel() == int((conv.weight != 0).sum())
    assert "sparsity=0.8" in repr(sc)


def test_sparse_conv2d_module_state_dict_round_trip():
    sc = SparseConv2d.from_conv(_pruned_conv(0.5, padding=1))
    buf = io.BytesIO()
    torch.save(sc.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf)
    assert set(state) == {"row_ptr", "col_idx", "values", "bias"}
    torch.testing.assert_close(sc.dense_weight(), _pruned_conv(0.5, padding=1).weight.detach())


def test_sparse_conv2d_rejects_what_the_kernel_lacks():
    with pytest.raises(EdgecError, match="groups=2"):
        SparseConv2d.from_conv(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(EdgecError, match="padding_mode"):
        SparseConv2d.from_conv(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"))


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
def test_lowbit_linear_module_is_x_times_dequantized_weight(bits):
    torch.manual_seed(bits)
    lin = nn.Linear(37, 11)
    lb = LowBitLinear.from_linear(lin, bits)
    x = torch.randn(3, 5, 37)
    w_hat = torch.from_numpy(dequantize_lowbit(pack_lowbit(lin.weight, bits)))
    torch.testing.assert_close(lb(x), x @ w_hat.T + lin.bias.detach(), rtol=1e-5, atol=1e-5)
    assert lb(x).shape == (3, 5, 11) and lb.words.dtype == torch.int32
    if bits == 8:  # 8-bit weight-only is close to the float layer
        torch.testing.assert_close(lb(x), lin(x), rtol=0, atol=0.02)


def test_detect_lowbit_recognises_trained_grids():
    rng = np.random.default_rng(0)
    alpha = rng.random(5).astype(np.float32) + 0.1
    binary = np.where(rng.random((5, 20)) < 0.5, -1, 1) * alpha[:, None]
    bits, q, s = detect_lowbit(binary)
    assert bits == 1 and np.allclose(q * s[:, None], binary)
    ternary = rng.integers(-1, 2, (5, 20)) * alpha[:, None]
    ternary[:, 0] = alpha  # make sure every row has a nonzero
    assert detect_lowbit(ternary)[0] == 2
    four = rng.integers(-7, 8, (5, 20)) * alpha[:, None]
    four[:, 0], four[:, 1] = alpha, 7 * alpha
    assert detect_lowbit(four)[0] == 4
    assert detect_lowbit(rng.standard_normal((5, 20))) is None


class _Student(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                      nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.pool(self.features(x)).flatten(1))))


def test_convert_swaps_eligible_layers_and_explains_the_rest():
    torch.manual_seed(0)
    student = _Student().eval()
    prune.l1_unstructured(student.features[2], "weight", amount=0.9)   # sparse enough
    prune.l1_unstructured(student.features[0], "weight", amount=0.3)   # not sparse enough
    prune.l1_unstructured(student.features[4], "weight", amount=0.9)   # depthwise: unsupported
    with torch.no_grad():  # fc1 trained with BinaryConnect: +-alpha per row
        student.fc1.weight.copy_(torch.sign(student.fc1.weight) * 0.3)
    x = torch.randn(2, 3, 8, 8)
    expected = student(x)
    model, report = convert(student, min_sparsity=0.7)
    rows = {r["name"]: r for r in report}
    assert rows["features.2"]["action"] == "swapped" and rows["features.2"]["to"] == "SparseConv2d"
    assert rows["features.0"]["action"] == "kept" and "min_sparsity" in rows["features.0"]["reason"]
    assert rows["features.4"]["action"] == "kept" and "groups=8" in rows["features.4"]["reason"]
    assert rows["fc1"]["action"] == "swapped" and rows["fc1"]["bits"] == 1
    assert rows["fc2"]["action"] == "kept" and "bits=" in rows["fc2"]["reason"]
    assert isinstance(model.features[2], SparseConv2d) and isinstance(model.fc1, LowBitLinear)
    assert isinstance(student.features[2], nn.Conv2d)  # the input model is left alone
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)  # lossless swaps

    quantized, report4 = convert(student, bits=4, min_sparsity=1.01)
    assert {r["name"] for r in report4 if r["action"] == "swapped"} == {"fc1", "fc2"}
    assert all(r["relative_weight_error"] < 0.15 for r in report4 if r.get("bits") == 4)
    assert (quantized(x) - expected).abs().max() < 0.1

"""Quantized training: BinaryConnect and stochastic rounding step by step, layer policy, fit's hook."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from edgec.compress.fakequant import FakeQuantConv2d, FakeQuantLinear
from edgec.compress.lowbit import LowBitConv2d, LowBitLinear, finalize_lowbit
from edgec.compress.qat import after_quantized_step, finalize, prepare_qat, quantized_layers
from edgec.compress.quantizers import make_quantizer
from edgec.errors import ModelError, RecipeError
from edgec.train import TrainConfig, fit
from tests.tiny_models import small_cnn


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def one_weight_layer(rule: str, w0: float) -> LowBitLinear:
    layer = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(w0)
    return LowBitLinear.from_float(layer, make_quantizer(1), rule=rule)


def test_binaryconnect_updates_the_buffer_with_the_gradient_at_the_quantized_weight_then_clips():
    # loss (w_b * x - y)^2 with x = 1, y = -1: dL/dw_b = 2 (w_b + 1). Grid {-0.3, +0.3} (alpha = |w0|).
    model = nn.Sequential(one_weight_layer("binaryconnect", 0.3))
    layer = model[0]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.ones(1, 1), -torch.ones(1, 1)
    expected_wr = [0.04, -0.22, -0.3, -0.3]  # 0.3-0.26; 0.04-0.26; -0.22-0.14 -> clip; -0.3-0.14 -> clip
    wr = 0.3
    for want in expected_wr:
        wb = 0.3 if wr >= 0 else -0.3                        # Q(w_r) = alpha * sign(w_r)
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).sum()
        loss.backward()
        assert layer.weight.grad.item() == pytest.approx(2 * (wb + 1))  # gradient at Q(w_r), not at w_r
        opt.step()
        assert layer.weight.item() == pytest.approx(wr - 0.1 * 2 * (wb + 1))  # buffer moved by lr * grad
        after_quantized_step(model)                          # fit's after_step hook: clip to [-0.3, 0.3]
        assert layer.weight.item() == pytest.approx(want)
        wr = want
    assert layer.weight_scale.tolist() == pytest.approx([0.3])  # the grid stays fixed


def test_stochastic_rounding_keeps_the_weights_on_the_grid_with_no_hidden_copy():
    torch.manual_seed(0)
    layer = LowBitLinear.from_float(nn.Linear(6, 4), make_quantizer(3), rule="stochastic_rounding")
    model = nn.Sequential(layer)
    assert set(model.state_dict()) == {"0.weight", "0.bias", "0.weight_scale", "0.weight_threshold"}
    scale = layer.weight_scale.clone()[:, None]              # [4, 1]
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(32, 6), torch.randn(32, 4)
    for _ in range(20):
        codes = layer.weight.detach() / scale
        assert torch.equal(codes, codes.round()) and codes.abs().max() <= 3  # on the 3-bit grid
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        assert torch.equal(model(x), x @ layer.weight.detach().T + layer.bias.detach())  # forward = W itself
        opt.step()
        stepped = (layer.weight.detach() / scale).clamp(-3, 3)  # w_t - lr * g, in grid units
        after_quantized_step(model)                          # W <- Q_s(W - lr g)
        new = layer.weight.detach() / scale
        assert ((new == stepped.floor()) | (new == stepped.ceil())).all()
    assert torch.equal(layer.weight_scale, scale[:, 0])


def test_stochastic_rounding_is_reproducible_from_the_seed():
    def run() -> torch.Tensor:
        torch.manual_seed(3)
        layer = LowBitLinear.from_float(nn.Linear(5, 3), make_quantizer(2), rule="stochastic_rounding")
        for _ in range(5):
            with torch.no_grad():
                layer.weight.add_(0.01)
            layer.after_step()
        return layer.weight.detach().clone()
    assert torch.equal(run(), run())


def test_fit_calls_after_step_once_per_optimizer_step():
    calls = []
    x = np.random.default_rng(0).normal(size=(100, 1, 8, 8)).astype(np.float32)
    y = np.arange(100) % 10
    fit(small_cnn(), (x, y), (x, y), TrainConfig(epochs=2, batch_size=25), progress=False,
        after_step=lambda m: calls.append(type(m).__name__))
    assert calls == ["Sequential"] * 8


def test_lowbit_policy_keeps_first_and_last_layers_float_by_default():
    prepared = prepare_qat(small_cnn(), "bc", bits=1)
    assert quantized_layers(prepared) == ["conv2", "conv3"]
    assert isinstance(prepared.conv2, LowBitConv2d) and type(prepared.conv1) is nn.Conv2d
    assert isinstance(prepared.bn2, nn.BatchNorm2d)         # BN stays for low-bit training
    everything = prepare_qat(small_cnn(), "sr", bits=2, quantize_first=True, quantize_last=True)
    assert quantized_layers(everything) == ["conv1", "conv2", "conv3", "fc"]


def test_int8_qat_folds_batchnorm_and_quantizes_every_weighted_layer():
    prepared = prepare_qat(small_cnn(), "qat")
    assert quantized_layers(prepared) == ["conv1", "conv2", "conv3", "fc"]
    assert isinstance(prepared.conv1, FakeQuantConv2d) and isinstance(prepared.fc, FakeQuantLinear)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in prepared.modules())
    assert prepared.conv1.bias is not None                 # BN's shift became the conv bias


def test_finalize_lowbit_folds_batchnorm_into_the_scale_and_matches_the_trained_model():
    model = prepare_qat(small_cnn(), "bc", bits=2)
    with torch.no_grad():                                   # non-trivial BN statistics, one negative gamma
        for bn in (model.bn2, model.bn3):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
        model.bn2.weight[0] = -0.7
    model.eval()
    x = torch.randn(16, 1, 8, 8)
    deployed = finalize(model)
    assert torch.allclose(deployed(x), model(x), atol=1e-5)
    assert isinstance(deployed.bn2, nn.Identity) and isinstance(deployed.bn1, nn.BatchNorm2d)
    for name in ("conv2", "conv3"):
        m = deployed.get_submodule(name)
        info = m.lowbit
        assert info.folded_bn == name.replace("conv", "bn") and (info.scale >= 0).all()
        assert set(info.codes.unique().tolist()) <= {-1, 0, 1}
        assert torch.equal(m.weight, info.scale.reshape(-1, 1, 1, 1) * info.codes.float())  # bit-exact


def test_finalize_of_stochastic_rounding_uses_the_weights_as_they_are():
    model = prepare_qat(small_cnn(), "sr", bits=4).eval()
    deployed = finalize_lowbit(model)
    x = torch.randn(8, 1, 8, 8)
    assert torch.allclose(deployed(x), model(x), atol=1e-5)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"method": "binaryconect", "bits": 1}, RecipeError, "did you mean 'binaryconnect'"),
    ({"method": "bc", "bits": 0}, RecipeError, "bits=0"),
    ({"method": "sr", "bits": 9}, RecipeError, "bits=9"),
    ({"method": "sr"}, RecipeError, "needs quantize.bits"),
    ({"method": "qat", "bits": 4}, RecipeError, "INT8"),
    ({"method": "ptq", "bits": 8}, RecipeError, "does not train"),
    ({"method": "qat", "act_observer": "minmax"}, RecipeError, "activation observer"),
])
def test_bad_settings_fail_clearly(kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        prepare_qat(small_cnn(), **kwargs)
    assert info.value.hint


def test_finalize_needs_a_quantized_model_and_prepare_refuses_one_twice():
    with pytest.raises(ModelError, match="no quantized-training layers"):
        finalize(small_cnn())
    with pytest.raises(ModelError, match="already prepared"):
        prepare_qat(prepare_qat(small_cnn(), "bc", bits=1), "bc", bits=1)

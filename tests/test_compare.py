"""edgec.compare: the one comparison every parity/verification check uses, and FP32 references without TF32."""

import numpy as np
import pytest
import torch
from torch import nn

from edgec.compare import compare, full_fp32, torch_outputs
from edgec.errors import VerificationFailed


def test_tolerance_is_atol_plus_rtol_times_reference():
    ref = np.array([[1.0, 10.0], [100.0, 0.0]])
    got = ref + np.array([[0.2, 1.1], [9.0, 0.05]])
    c = compare(ref, got, atol=0.1, rtol=0.1)  # bounds: 0.2, 1.1, 10.1, 0.1 -> all within
    assert c.outside_tolerance == 0.0 and c.passed()
    c = compare(ref, got, atol=0.1, rtol=0.05)  # bounds: 0.15, 0.6, 5.1, 0.1 -> three outside
    assert c.outside_tolerance == pytest.approx(3 / 4) and not c.passed()
    assert c.max_abs_diff == pytest.approx(9.0) and c.top1_agreement == 1.0 and c.n == 2


def test_nan_is_never_within_tolerance():
    ref = np.zeros((2, 3))
    got = ref.copy()
    got[1, 2] = np.nan
    c = compare(ref, got, atol=1e9, rtol=1e9)
    assert c.outside_tolerance == pytest.approx(1 / 6) and not c.passed()
    assert np.isnan(c.max_abs_diff)


def test_top1_and_accuracy_with_labels():
    ref = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    got = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [2.0, 0.0]])
    c = compare(ref, got, labels=np.array([0, 1, 0, 1]))
    assert c.top1_agreement == 0.5
    assert (c.reference_accuracy, c.accuracy, c.accuracy_drop) == (1.0, 0.5, 0.5)
    assert c.passed() and not c.passed(min_top1_agreement=0.9) and not c.passed(max_accuracy_drop=0.1)
    assert "accuracy drop 50.00 points" in c.describe()


def test_plain_comparison_keeps_four_keys_and_shape_mismatch_fails():
    c = compare(np.eye(3), np.eye(3))
    assert set(c.to_dict()) == {"max_abs_diff", "mean_abs_diff", "top1_agreement", "n"}
    assert set(compare(np.eye(3), np.eye(3), atol=1.0).to_dict()) >= {"atol", "rtol", "outside_tolerance"}
    with pytest.raises(VerificationFailed, match="shape"):
        compare(np.eye(3), np.eye(2))


def test_full_fp32_turns_tf32_off_and_restores():
    before = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
              torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")  # what a user enabling TF32 would set
    try:
        with full_fp32():
            assert torch.get_float32_matmul_precision() == "highest"
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cuda.matmul.allow_tf32 = before[1]
        torch.backends.cudnn.allow_tf32 = before[2]


def test_torch_outputs_batches_and_restores_training_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)).train()
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    whole = torch_outputs(model, x)
    assert model.training and whole.shape == (10, 3) and whole.dtype == np.float32
    np.testing.assert_allclose(torch_outputs(model, x, batch_size=3), whole, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(model.eval()(torch.from_numpy(x)).numpy(), whole, rtol=1e-6)


@pytest.mark.gpu
def test_gpu_reference_without_tf32_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch.cuda.is_available() is False)")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 64, 5), nn.ReLU(), nn.Conv2d(64, 64, 5), nn.Flatten(), nn.LazyLinear(10))
    x = np.random.default_rng(0).normal(size=(64, 1, 28, 28)).astype(np.float32)
    cpu = torch_outputs(model, x)
    torch.backends.cudnn.allow_tf32 = True  # the default that made BinaryConnect's parity fail on an H200
    gpu = torch_outputs(model.cuda(), x)
    assert torch.backends.cudnn.allow_tf32  # restored
    assert compare(cpu, gpu, atol=1e-4, rtol=1e-3).passed(), compare(cpu, gpu).describe()

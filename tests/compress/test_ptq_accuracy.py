"""Accuracy-aware PTQ: the float fallback when INT8 misses the budget, and the failure when it cannot help."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgec.compress.ptq_accuracy import quantize_within_budget, quantized_layers, reference_logits
from edgec.errors import VerificationFailed
from edgec.export.onnx import export_onnx
from edgec.export.qdq import qdq_problems


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """An untrained (seeded) net whose own FP32 predictions are the labels: FP32 scores exactly 1.0 on
    the validation set, and INT8 with clipped (99th percentile) ranges flips some of its small margins."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)).eval()
    folder = tmp_path_factory.mktemp("ptq")
    fp32 = export_onnx(model, (1, 8, 8), folder / "model.onnx", exporter="torchscript")
    rng = np.random.default_rng(0)
    x_cal = rng.normal(size=(256, 1, 8, 8)).astype(np.float32)
    x_val = rng.normal(size=(400, 1, 8, 8)).astype(np.float32)
    y_val = reference_logits(fp32, x_val).argmax(1)
    return fp32, x_cal, x_val, y_val, folder


OPTIONS = {"method": "percentile", "percentile": 99.99}


def test_within_budget_needs_no_float_layer(task, tmp_path):
    fp32, x_cal, x_val, y_val, _ = task
    result = quantize_within_budget(fp32, tmp_path / "q.onnx", x_cal, x_val, y_val, budget_points=100.0,
                                    max_float_layers=3, **OPTIONS)
    assert result["fp32_val_accuracy"] == 1.0 and result["float_layers"] == [] and len(result["steps"]) == 1
    assert "sensitivity" not in result  # the ranking runs only when the budget is missed
    assert qdq_problems(tmp_path / "q.onnx") == []


def test_missed_budget_keeps_the_most_sensitive_layers_in_float(task, tmp_path):
    fp32, x_cal, x_val, y_val, _ = task
    out = tmp_path / "q.onnx"
    result = quantize_within_budget(fp32, out, x_cal, x_val, y_val, budget_points=0.5, max_float_layers=3, **OPTIONS)
    steps = result["steps"]
    assert steps[0]["float_layers"] == [] and steps[0]["val_accuracy"] < 0.995  # INT8 alone misses the budget
    assert result["float_layers"] and result["val_accuracy"] >= 0.995 and result["val_accuracy"] == steps[-1]["val_accuracy"]
    assert [len(s["float_layers"]) for s in steps] == list(range(len(steps)))  # one more layer per step
    ranking = [r["layer"] for r in result["sensitivity"]]
    assert sorted(ranking) == sorted(["/0/Conv", "/2/Conv", "/5/Gemm"])  # every quantized layer was scored
    assert result["float_layers"] == ranking[:len(result["float_layers"])]  # most sensitive first
    # The layers kept in float have no dequantized input; the rest are still INT8, and TensorRT accepts it.
    model = onnx.load(str(out))
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    fed = {n.name for n in model.graph.node if any(i in dq_out for i in n.input)}
    assert not fed & set(result["float_layers"])
    assert set(quantized_layers(out)) == set(ranking) - set(result["float_layers"])
    assert qdq_problems(out) == []


def test_budget_out_of_reach_fails_naming_the_layers_and_writes_nothing(task, tmp_path):
    fp32, x_cal, x_val, y_val, _ = task
    out = tmp_path / "q.onnx"
    with pytest.raises(VerificationFailed, match="accuracy_budget") as info:
        quantize_within_budget(fp32, out, x_cal, x_val, y_val, budget_points=0.0, max_float_layers=0, **OPTIONS)
    assert info.value.exit_code == 1 and "quantize.method: qat" in info.value.hint
    assert "[none] -> " in str(info.value)  # the attempts are listed (here: no layer in float)
    # FP32 is exact by construction, so a zero budget needs every layer in float: out of reach, since
    # one layer at least stays INT8. The message names the layers it tried.
    with pytest.raises(VerificationFailed) as info:
        quantize_within_budget(fp32, out, x_cal, x_val, y_val, budget_points=0.0, max_float_layers=3, **OPTIONS)
    tried = info.value.message.split("tried (float layers -> val accuracy): ")[1]
    assert tried.count("] -> ") == 3 and "[/5/Gemm] -> " in tried
    assert not out.exists() and list(tmp_path.iterdir()) == []

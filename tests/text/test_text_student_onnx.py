"""The BiLSTM student: ONNX export with the LSTM op, parity with torch, dynamic INT8 in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgec.errors import ModelError
from edgec.text.onnx import INPUT, export_student, op_counts, quantize_student, student_parity
from edgec.text.student import BiLSTMClassifier, count_params, load_student, save_student

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = BiLSTMClassifier(vocab_size=50, embed_dim=8, hidden=12, mlp_hidden=10).eval()
    path = export_student(model, tmp_path_factory.mktemp("onnx") / "model.onnx")
    return model, path


def ids_batch(rng, batch, max_len):
    lengths = rng.integers(1, max_len + 1, batch)
    ids = np.zeros((batch, max_len), np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(3, 50, n)
    return ids


def test_graph_has_one_lstm_and_dynamic_axes(exported):
    import onnxruntime as ort

    _, path = exported
    assert op_counts(path)["LSTM"] == 1
    inp = ort.InferenceSession(str(path)).get_inputs()[0]
    assert inp.name == INPUT and inp.type == "tensor(int64)" and inp.shape == ["batch", "seq"]


@pytest.mark.parametrize("batch,max_len", [(1, 1), (1, 9), (7, 5), (33, 23)])
def test_onnx_matches_torch_for_varied_lengths(exported, batch, max_len):
    import onnxruntime as ort

    model, path = exported
    ids = ids_batch(np.random.default_rng(batch * max_len), batch, max_len)
    got = ort.InferenceSession(str(path)).run(None, {INPUT: ids})[0]
    with torch.inference_mode():
        ref = model(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-4)
    # padding must not change a sentence's logits: each row alone, unpadded, gives the same
    for row, expect in zip(ids, ref):
        one = row[row != 0][None, :]
        np.testing.assert_allclose(ort.InferenceSession(str(path)).run(None, {INPUT: one})[0][0], expect, atol=1e-5)


def test_parity_helper_reports_and_fails_on_a_different_model(exported, tmp_path):
    model, path = exported
    ids = ids_batch(np.random.default_rng(0), 40, 12)
    assert student_parity(model, path, ids).max_abs_diff < 1e-5
    other = BiLSTMClassifier(vocab_size=50, embed_dim=8, hidden=12, mlp_hidden=10).eval()
    from edgec.errors import VerificationFailed

    with pytest.raises(VerificationFailed, match="disagrees with torch"):
        student_parity(other, path, ids)


def test_int8_model_runs_and_agrees(exported, tmp_path):
    import onnxruntime as ort

    model, path = exported
    q = quantize_student(path, tmp_path / "model.int8.onnx")
    ops = op_counts(q)
    assert ops.get("DynamicQuantizeLSTM") == 1 and "LSTM" not in ops and ops.get("MatMulInteger", 0) >= 1
    ids = ids_batch(np.random.default_rng(5), 64, 15)
    fp32 = ort.InferenceSession(str(path)).run(None, {INPUT: ids})[0]
    int8 = ort.InferenceSession(str(q)).run(None, {INPUT: ids})[0]
    assert np.abs(int8 - fp32).max() < 0.05 * np.abs(fp32).max() + 1e-3
    assert np.mean(int8.argmax(1) == fp32.argmax(1)) >= 0.9
    assert q.stat().st_size < path.stat().st_size


def test_save_load_round_trip_and_param_counts(exported, tmp_path):
    model, _ = exported
    loaded = load_student(save_student(model, tmp_path / "s.safetensors"))
    ids = torch.tensor([[4, 5, 6], [7, 0, 0]])
    assert torch.equal(loaded(ids), model(ids))
    counts = count_params(model)
    assert counts["total"] - counts["without_embeddings"] == 50 * 8
    (tmp_path / "x.safetensors").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not an edgec BiLSTM"):
        load_student(tmp_path / "x.safetensors")

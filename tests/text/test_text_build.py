"""`edgec build` of a tiny SST-2 text recipe end to end, and the text recipe's validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgec.errors import RecipeError
from edgec.recipe import load_recipe, parse_recipe

TINY = Path(__file__).with_name("tiny.yaml")


def test_builtin_text_recipe_validates():
    r = load_recipe("sst2-bilstm", data_path="/x")
    assert r.data.name == "sst2" and r.text.augment.n_iter == 20 and r.text.augment.p_ng == 0.25
    assert r.distill.method == "mse" and r.export.exporter == "torchscript"


@pytest.mark.parametrize("data,message", [
    ({"text": {}}, "text section is for text data only"),
    ({"data": {"name": "sst2"}, "export": {"exporter": "torchscript"}}, "set distill.method: mse"),
    ({"data": {"name": "sst2"}, "distill": {"method": "mse", "params": {"T": 4}}, "export": {"exporter": "torchscript"}},
     "take only ce_weight"),
    ({"data": {"name": "sst2"}, "distill": {"method": "mse"}}, "export.exporter: torchscript"),
    ({"data": {"name": "sst2"}, "text": {"augment": {"p_mask": 0.6, "p_pos": 0.6}}}, "p_mask \\+ p_pos"),
    ({"data": {"name": "sst2"}, "text": {"student": {"hiden": 3}}}, "did you mean 'hidden'"),
])
def test_text_recipe_errors(data, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe({"edgec": 1, **data})


@pytest.mark.usefixtures("one_torch_thread")
def test_tiny_build_end_to_end(shared_data, tmp_path):
    pytest.importorskip("transformers", reason="the text teacher needs edgec[nlp]")
    pytest.importorskip("textblob", reason="POS-guided augmentation needs edgec[nlp] (textblob)")
    from edgec.pipeline import build

    result = build(TINY, out=tmp_path / "run", data_path=shared_data / "sst2", progress=False)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    models = report["models"]
    assert set(models) == {"teacher", "student", "student_fp32_onnx", "student_int8"}
    for m in models.values():
        assert 0 <= m["accuracy"] <= 1 and m["params"] > 0 and m["latency_ms"]["p50"] > 0
    assert models["teacher"]["params_detail"]["total"] > 20_000_000
    assert models["student"]["params_detail"]["without_embeddings"] < models["student"]["params"]
    assert report["parity"]["max_abs_diff"] < 1e-4 and report["summary"]["int8_top1_agreement"] >= 0.9
    assert report["dataset"]["sizes"]["test"] == 100
    deploy = json.loads((tmp_path / "run" / "deploy" / "deploy.json").read_text())
    assert set(deploy["files"]) == {"model.onnx", "model.int8.onnx", "vocab.json"}
    assert deploy["input"] == {"name": "input_ids", "shape": ["batch", "seq"], "dtype": "int64"}
    assert result.artifacts["transfer"].metrics["augmented"] > 0

    # served without edgec: vocab.json + onnxruntime only
    import numpy as np
    import onnxruntime as ort

    vocab = json.loads((tmp_path / "run" / "deploy" / "vocab.json").read_text())
    index = {w: i for i, w in enumerate(vocab["words"])}
    ids = np.array([[index.get(w, vocab["unk_id"]) for w in "a zzzunknownzzz film".lower().split()]], np.int64)
    logits = ort.InferenceSession(str(tmp_path / "run" / "deploy" / "model.int8.onnx")).run(None, {"input_ids": ids})[0]
    assert logits.shape == (1, 2) and np.isfinite(logits).all()

    results = tmp_path / "run" / "results.json"
    from typer.testing import CliRunner

    from edgec.cli import app

    out = CliRunner().invoke(app, ["gate", str(results), "--baseline", str(results)])
    assert out.exit_code == 0, out.output

    again = build(TINY, out=tmp_path / "run", data_path=shared_data / "sst2", progress=False)
    assert again.ran == [] and "teacher" in again.reused  # every stage cached

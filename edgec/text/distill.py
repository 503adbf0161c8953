"""Distilling the teacher into the BiLSTM: the transfer set, its teacher logits, MSE on logits.

Tang et al.: the student regresses the teacher's *logits* with a mean squared error (not a
softened KL), on a transfer set = the original training sentences + their augmented copies
(:mod:`edgec.text.augment`), all labelled by the teacher. ``ce_weight`` (alpha) optionally mixes
in cross-entropy on the gold labels, where a sentence has one (the originals):

    loss = (1 - alpha) * MSE(student_logits, teacher_logits) + alpha * CE(student_logits, gold)

Training reuses :func:`edgec.train.fit` (seeding, resumable checkpoints, NaN guard, best epoch by
validation accuracy): its targets are *row indices* into the transfer set, which the loss uses to
look up the teacher's logits and the gold labels; validation sees real labels.

Example:
    >>> sentences, gold, source = transfer_set(train.sentences, train.y, augmenter, max_sentences=2000)
    >>> logits = label_transfer(teacher, tokenizer, sentences)
    >>> result = train_student(student, vocab, sentences, logits, gold, val, TrainConfig(epochs=5))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgec.text.augment import Augmenter
from edgec.text.vocab import Vocab


def transfer_set(sentences: list[str], labels: np.ndarray, augmenter: Augmenter | None,
                 max_sentences: int | None = None, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(sentences, gold, source)``: every original (gold = its label), then the augmented copies of
    a seeded subset of ``max_sentences`` originals (gold = -1: the teacher's logits are the only target).
    ``source`` is the index of the original each row came from."""
    out, gold, source = list(sentences), list(np.asarray(labels, dtype=np.int64)), list(range(len(sentences)))
    if augmenter is not None:
        pick = np.arange(len(sentences))
        if max_sentences is not None and max_sentences < len(sentences):
            pick = np.sort(np.random.default_rng(seed).choice(len(sentences), max_sentences, replace=False))
        for i, text in augmenter.augment([sentences[j] for j in pick], seed=seed):
            out.append(text)
            gold.append(-1)
            source.append(int(pick[i]))
    return out, np.asarray(gold, dtype=np.int64), np.asarray(source, dtype=np.int64)


def label_transfer(teacher: Any, tokenizer: Any, sentences: list[str], *, batch_size: int = 128,
                   max_length: int = 64, progress: bool = True) -> np.ndarray:
    """The teacher's logits (N, classes) of every transfer sentence, in batches with a progress bar."""
    from edgec.text.teacher import predict_logits

    return predict_logits(teacher, tokenizer, sentences, batch_size=batch_size, max_length=max_length,
                          progress=progress, description="teacher labels")


def distill_loss(teacher_logits: np.ndarray, gold: np.ndarray, ce_weight: float = 0.0) -> Callable:
    """``loss_fn(model, ids, rows)`` for :func:`edgec.train.fit` (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    targets = torch.as_tensor(teacher_logits, dtype=torch.float32)
    labels = torch.as_tensor(gold, dtype=torch.long)

    def loss(model, ids, rows):
        out = model(ids)
        rows = rows.cpu()  # the tables stay on the CPU; one batch of them goes to the model's device
        mse = F.mse_loss(out, targets[rows].to(out.device))
        if ce_weight == 0:
            return mse
        g = labels[rows].to(out.device)
        has = g >= 0
        ce = F.cross_entropy(out[has], g[has]) if bool(has.any()) else out.sum() * 0
        return (1 - ce_weight) * mse + ce_weight * ce

    return loss


def train_student(model: Any, vocab: Vocab, sentences: list[str], teacher_logits: np.ndarray | None,
                  gold: np.ndarray, val: tuple[list[str], np.ndarray], config: Any, *, ce_weight: float = 0.0,
                  workdir: Any = None, progress: bool = True, description: str = "student"):
    """Train ``model`` in place: MSE on ``teacher_logits`` (+ ``ce_weight`` CE), or plain cross-entropy
    on ``gold`` when ``teacher_logits`` is None (the non-distilled baseline). Returns fit's result."""
    from edgec.train import fit

    ids, _ = vocab.encode(sentences)
    val_ids, _ = vocab.encode(val[0])
    val_pair = (val_ids, np.asarray(val[1], dtype=np.int64))
    if teacher_logits is None:
        keep = gold >= 0
        return fit(model, (ids[keep], gold[keep]), val_pair, config, workdir=workdir, progress=progress,
                   description=description)
    rows = np.arange(len(sentences), dtype=np.int64)
    return fit(model, (ids, rows), val_pair, config, loss_fn=distill_loss(teacher_logits, gold, ce_weight),
               workdir=workdir, progress=progress, description=description,
               resume_key=f"mse-logits ce_weight={ce_weight} n={len(rows)}")


def build_student(vocab: Vocab, params: dict[str, Any], init: np.ndarray | None, seed: int = 0):
    """A seeded :class:`BiLSTMClassifier` over ``vocab``; ``init`` (len(vocab), embed_dim) sets the
    embedding table (the same init for the distilled and the plain student keeps them comparable)."""
    import torch

    from edgec.text.student import BiLSTMClassifier
    from edgec.train import set_seed

    set_seed(seed)
    model = BiLSTMClassifier(len(vocab), **params)
    if init is not None:
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(init))
    return model

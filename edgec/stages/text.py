"""The text task's stages of `edgec build` (``data.name: sst2``), Tang et al.'s BERT -> BiLSTM distillation.

    teacher   fine-tune a local Hugging Face encoder (offline)    model.safetensors, config.json, tokenizer files
    transfer  augment the training sentences; the teacher labels  transfer.json, logits.npy
              every original and augmented sentence
    distill   vocabulary + BiLSTM trained with MSE on the logits  student.safetensors, vocab.json
    export    FP32 ONNX (LSTM op), parity with torch              model.onnx, vocab.json
    quantize  dynamic INT8 in ONNX Runtime                        model.int8.onnx
    engine -> verify -> bench                                    the image task's stages, fed by TextInputs

The chain itself is data (:data:`edgec.stages.tasks.TEXT`). Artifacts, cache keys, reports and
``results.json`` work as for image models; the difference is the input: every model gets its own token
ids for the same sentences (word pieces for the teacher, vocabulary ids for the student), which
:class:`TextInputs` gives the one ``verify`` and ``bench`` (:mod:`edgec.stages.check`). With
``distill.enabled: false`` the BiLSTM is trained on the gold labels alone (the paper's non-distilled
baseline) and ``transfer`` is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.artifacts import Artifact, StageWork, sha256_file, stable_hash
from edgec.atomic import atomic_write_json
from edgec.backends import resolve_backend
from edgec.backends.torch.runner import TorchRunner
from edgec.console import say
from edgec.onnx_files import describe_io
from edgec.runtimes import open_runner, predict
from edgec.stages.convert import ONNX
from edgec.stages.defs import parent
from edgec.stages.inputs import thread_options
from edgec.stages.train import CHECKPOINT, train_config, training_device
from edgec.text.augment import Augmenter
from edgec.text.distill import build_student, label_transfer, train_student, transfer_set
from edgec.text.onnx import export_student, op_counts, quantize_student, student_parity
from edgec.text.student import count_params, load_student, lstm_macs, save_student, teacher_embedding_init
from edgec.text.teacher import (count_teacher_params, default_teacher_path, fine_tune, ids_module, load_teacher,
                                predict_logits, save_teacher, teacher_text)
from edgec.text.vocab import MASK, UNK, Vocab

if TYPE_CHECKING:
    from edgec.build_context import BuildContext

TEACHER_WEIGHTS = "model.safetensors"
TRANSFER, LOGITS = "transfer.json", "logits.npy"
STUDENT, VOCAB = "student.safetensors", "vocab.json"


def teacher_folder(path: str | None) -> Path:
    return Path(path) if path else default_teacher_path()


def folder_digest(folder: Path) -> str:
    """Hash of a teacher folder's files: replacing the model re-runs the teacher stage."""
    if not folder.is_dir():
        return "missing"  # load_teacher reports it clearly when the stage runs
    return stable_hash({p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()})


def text_backend(requested: str) -> str:
    """The backend ``engine.backend`` means for the text student: one whose ``tasks`` include text
    (ONNX Runtime: its dynamic INT8 LSTM, ``DynamicQuantizeLSTM``, is an ORT op)."""
    return resolve_backend(requested, task="text", reason="dynamic INT8 LSTM is an ONNX Runtime op")


def median_sentence(sentences: list[str]) -> str:
    """The test sentence of median word count: what batch-1 latency and MACs are quoted for."""
    order = sorted(range(len(sentences)), key=lambda i: (len(sentences[i].split()), i))
    return sentences[order[len(order) // 2]]


def teacher_macs(config: Any, tokens: int) -> int:
    """MACs of a BERT-style encoder + pooler + head on one sequence of ``tokens`` word pieces."""
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = tokens * (4 * h * h + 2 * h * inter) + 2 * tokens * tokens * h
    return int(layers * per_layer + h * h + h * config.num_labels)


def _device(ctx: BuildContext):
    """Where the text stages train and label: the recipe's ``train.device`` (see edgec.stages.train)."""
    return training_device(ctx)


def teacher(ctx: BuildContext, work: StageWork) -> None:
    """Fine-tune the teacher on the training split; save it flat (config, weights, tokenizer)."""
    t, ds = ctx.recipe.text.teacher, ctx.dataset
    folder = teacher_folder(t.path)
    model, tok = load_teacher(folder)
    model = model.to(_device(ctx))
    cfg = t.with_seed(ctx.recipe.seed)
    stats = fine_tune(model, tok, ds.train.sentences, ds.train.y, cfg, progress=ctx.progress) if t.steps else {}
    save_teacher(model, tok, work.path)
    val = predict_logits(model, tok, ds.val.sentences, batch_size=t.label_batch_size, max_length=t.max_length)
    val_acc = float((val.argmax(1) == ds.val.y).mean())
    pieces = len(tok(median_sentence(ds.test.sentences))["input_ids"])
    counts = count_teacher_params(model)
    work.metrics.update(modality="text", source=str(folder), params=counts["total"], params_detail=counts,
                        flops=teacher_macs(model.config, pieces), flops_at={"word_pieces": pieces},
                        val_accuracy=val_acc, training=stats)
    say(f"  teacher: {counts['total']:,} parameters, val accuracy {val_acc:.4f}")


def transfer(ctx: BuildContext, work: StageWork) -> None:
    """The transfer set: originals + augmented copies (Tang et al.), every sentence labelled by the teacher."""
    r, ds = ctx.recipe, ctx.dataset
    a = r.text.augment
    augmenter = None
    if a.enabled:
        augmenter = Augmenter.fit(ds.train.sentences, a)
    sentences, gold, source = transfer_set(ds.train.sentences, ds.train.y, augmenter, a.max_sentences, seed=r.seed)
    n_orig = len(ds.train)
    say(f"  transfer set: {n_orig:,} original + {len(sentences) - n_orig:,} augmented sentences")
    model, tok = load_teacher(parent(work, "teacher").path)
    model = model.to(_device(ctx))
    logits = label_transfer(model, tok, sentences, batch_size=r.text.teacher.label_batch_size,
                            max_length=r.text.teacher.max_length, progress=ctx.progress)
    atomic_write_json(work.path / TRANSFER, {"sentences": sentences, "gold": gold.tolist(), "source": source.tolist()})
    np.save(work.path / LOGITS, logits)
    agree = float((logits[:n_orig].argmax(1) == ds.train.y).mean())
    work.metrics.update(originals=n_orig, augmented=len(sentences) - n_orig,
                        augmented_sources=int(len(set(source[n_orig:].tolist()))),
                        teacher_train_accuracy=agree, tagger="pattern Brill tagger (textblob)" if a.enabled else None)


def load_transfer(art: Artifact) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(sentences, gold, teacher logits)`` of a transfer artifact (JSON + ``.npy``, no pickle)."""
    data = json.loads(art.file(TRANSFER).read_text(encoding="utf-8"))
    logits = np.load(art.file(LOGITS), allow_pickle=False)
    return data["sentences"], np.asarray(data["gold"], dtype=np.int64), logits


def student_init(teacher_path: Path, vocab, spec) -> np.ndarray | None:
    """Embedding init from the teacher's word-piece table (``spec.embed_init: teacher``), else None.

    The same init serves the distilled and the plain student, so their comparison is fair.
    """
    if spec.embed_init != "teacher":
        return None
    model, tok = load_teacher(teacher_path)
    table = model.get_input_embeddings().weight.detach().numpy()
    return teacher_embedding_init(vocab.words, tok, table, spec.embed_dim, {MASK: tok.mask_token, UNK: tok.unk_token})


def distill(ctx: BuildContext, work: StageWork) -> None:
    """Vocabulary from the training split, then the BiLSTM: distilled (MSE on logits) or plain (CE)."""
    r, ds = ctx.recipe, ctx.dataset
    s = r.text.student
    vocab = Vocab.build(ds.train.sentences, max_size=s.vocab_size, min_freq=s.min_freq)
    params = {"embed_dim": s.embed_dim, "hidden": s.hidden, "mlp_hidden": s.mlp_hidden, "dropout": s.dropout,
              "num_classes": ds.num_classes}
    model = build_student(vocab, params, student_init(parent(work, "teacher").path, vocab, s), seed=r.seed)
    model = model.to(_device(ctx))
    cfg = train_config(r.distill.train, r.seed)
    work.scratch.add(CHECKPOINT)
    val = (ds.val.sentences, ds.val.y)
    if r.distill.enabled:
        sentences, gold, logits = load_transfer(parent(work, "transfer"))
        result = train_student(model, vocab, sentences, logits, gold, val, cfg, workdir=work.path, progress=ctx.progress,
                               ce_weight=float(r.distill.params.get("ce_weight", 0.0)), description="student (distill)")
    else:
        result = train_student(model, vocab, ds.train.sentences, None, ds.train.y, val, cfg, workdir=work.path,
                               progress=ctx.progress, description="student (plain)")
    model = result.model.eval().cpu()
    save_student(model, work.path / STUDENT)
    vocab.save(work.path / VOCAB)
    counts = count_params(model)
    words = len(median_sentence(ds.test.sentences).split())
    unk = np.mean([i == 1 for sent in ds.test.sentences for i in vocab.ids(sent)])
    work.metrics.update(modality="text", params=counts["total"], params_detail=counts, flops=lstm_macs(model.config(), words),
                        flops_at={"words": words}, val_accuracy=result.best_val_accuracy, training=result.to_dict(),
                        vocab_size=len(vocab), test_unknown_word_rate=float(unk), distilled=r.distill.enabled)


def test_ids(ctx: BuildContext, vocab_path: Path) -> np.ndarray:
    """The test sentences as student ids (N, T), right-padded."""
    return Vocab.load(vocab_path).encode(ctx.dataset.test.sentences)[0]


def export(ctx: BuildContext, work: StageWork) -> None:
    """Student -> FP32 ONNX (LSTM op, dynamic batch and sequence), ONNX checker, parity with torch."""
    import shutil

    e = ctx.recipe.export
    src = parent(work, "distill")
    model = load_student(src.file(STUDENT))
    path = export_student(model, work.path / ONNX, opset=e.opset)
    shutil.copyfile(src.file(VOCAB), work.path / VOCAB)  # the vocabulary travels with the model
    ids = test_ids(ctx, src.file(VOCAB))[:256]
    parity = student_parity(model, path, ids, atol=e.parity_atol, rtol=e.parity_rtol)
    work.metrics.update(parity=parity.to_dict(), io=describe_io(path), ops=op_counts(path), vocab=VOCAB,
                        deploy_files=[VOCAB])  # edgec.deploy ships it beside the model
    say(f"  parity torch vs ONNX Runtime: max |diff| {parity.max_abs_diff:.2e}, top-1 agreement {parity.top1_agreement:.3f}")


def quantize(ctx: BuildContext, work: StageWork) -> None:
    """Dynamic INT8 (DynamicQuantizeLSTM, MatMulInteger, INT8 embedding table) in ONNX Runtime."""
    out = quantize_student(parent(work, "export").file(ONNX), work.path / "model.int8.onnx")
    ops = op_counts(out)
    work.metrics.update(kind="int8", file=out.name, method="ort_dynamic", bits=8, ops=ops)
    say(f"  INT8: {ops.get('DynamicQuantizeLSTM', 0)} DynamicQuantizeLSTM, {ops.get('MatMulInteger', 0)} MatMulInteger")


class TextInputs:
    """Per-model inputs for the same sentences: word-piece ids (teacher) or vocabulary ids (student);
    the text task's :class:`edgec.stages.inputs.ModelInputs`. ``ctx`` may be None outside a build
    (``ids`` and ``open`` only)."""

    unit = "sentences"
    images = None

    def __init__(self, ctx: BuildContext | None, work: StageWork):
        arts = {a.stage: a for a in work.parents}
        self.ctx = ctx
        self.teacher, self.tokenizer = load_teacher(arts["teacher"].path)
        self.vocab = Vocab.load(arts["export"].file(VOCAB))

    def ids(self, name: str, sentences: list[str]) -> np.ndarray:
        """``sentences`` as model ``name``'s input ids (N, T), right-padded."""
        if name == "teacher":
            enc = self.tokenizer(teacher_text(sentences, self.tokenizer), padding=True, truncation=True,
                                 max_length=512, return_tensors="np")
            return enc["input_ids"].astype(np.int64)
        return self.vocab.encode(sentences)[0]

    def open(self, name: str, path: Path, runtime: str, threads: int | None = None, **options: Any):
        """A Runner for model ``name`` (torch models wrapped to take int64 ids)."""
        if runtime != "torch":
            return open_runner(path, runtime=runtime, **options, **thread_options(runtime, threads))
        if name == "teacher":
            module = ids_module(self.teacher, self.tokenizer.pad_token_id)
        else:
            module = load_student(path)
        return TorchRunner(module, input_dtype="int64", **thread_options("torch", threads))

    def _build(self) -> BuildContext:
        if self.ctx is None:
            raise ValueError("TextInputs without a BuildContext gives ids and runners only")
        return self.ctx

    def test_logits(self, name: str, path: Path, runtime: str, **options: Any) -> np.ndarray:
        """Logits on the test sentences; the teacher runs length-sorted batches (it is the slow one)."""
        ctx = self._build()
        sentences = ctx.dataset.test.sentences
        if name == "teacher":
            return predict_logits(self.teacher, self.tokenizer, sentences, max_length=ctx.recipe.text.teacher.max_length)
        with self.open(name, path, runtime, **options) as runner:
            return predict(runner, self.ids(name, sentences))

    def feed(self, name: str, n: int) -> np.ndarray:
        """Batch 1 is the median-length test sentence, unpadded; ``bench.batch_size`` the first test
        sentences, padded to their longest."""
        ctx = self._build()
        sentences = ctx.dataset.test.sentences
        if n == 1 and ctx.recipe.bench.batch_size != 1:
            return self.ids(name, [median_sentence(sentences)])
        return self.ids(name, (sentences * n)[:n])

    def describe(self, name: str) -> list[dict]:
        one = median_sentence(self._build().dataset.test.sentences)
        return [{"name": "input_ids" if name != "teacher" else "input", "shape": list(self.feed(name, 1).shape[1:]),
                 "dtype": "int64", "source": f"median-length test sentence: {one!r}"}]

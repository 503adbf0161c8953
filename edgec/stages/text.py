"""The text chain of `edgec build` (``data.name: sst2``), Tang et al.'s BERT -> BiLSTM distillation.

    teacher   fine-tune a local Hugging Face encoder (offline)    model.safetensors, config.json, tokenizer files
    transfer  augment the training sentences; the teacher labels  transfer.json, logits.npy
              every original and augmented sentence
    distill   vocabulary + BiLSTM trained with MSE on the logits  student.safetensors, vocab.json
    export    FP32 ONNX (LSTM op), parity with torch              model.onnx, vocab.json
    quantize  dynamic INT8 in ONNX Runtime                        model.int8.onnx
    engine -> verify -> bench                                    the same metrics as the vision chain

Artifacts, cache keys, reports and ``results.json`` work as for vision models; the difference is the
input: every model gets its own token ids for the same sentences (word pieces for the teacher,
vocabulary ids for the student), so verify and bench prepare inputs per model here and reuse the
runners and :func:`edgec.bench.run.bench_model`. With ``distill.enabled: false`` the BiLSTM is
trained on the gold labels alone (the paper's non-distilled baseline) and ``transfer`` is skipped.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.artifacts import Artifact, StageWork, sha256_file, stable_hash
from edgec.atomic import atomic_write_json
from edgec.console import say
from edgec.errors import RecipeError, VerificationFailed
from edgec.stages.check import int8_problems, thread_options, write_bench

if TYPE_CHECKING:
    from edgec.pipeline import BuildContext

TEACHER_WEIGHTS = "model.safetensors"
STUDENT, VOCAB = "student.safetensors", "vocab.json"


def teacher_folder(path: str | None) -> Path:
    from edgec.text.teacher import default_teacher_path

    return Path(path) if path else default_teacher_path()


def folder_digest(folder: Path) -> str:
    """Hash of a teacher folder's files: replacing the model re-runs the teacher stage."""
    if not folder.is_dir():
        return "missing"  # load_teacher reports it clearly when the stage runs
    return stable_hash({p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()})


def run_text(ctx: BuildContext) -> dict[str, Artifact]:
    """Run the text chain of ``ctx.recipe``; returns the artifacts by stage name."""
    from edgec.bench.results import SCHEMA
    from edgec.stages.train import device_config

    r, t = ctx.recipe, ctx.recipe.text
    ds = ctx.dataset  # a TextDataset (BuildContext.dataset dispatches on data.name)
    backend = text_backend(r.engine.backend)  # fail before any training
    on = device_config(ctx)  # train.device: the GPU's name keys the training stages; {} on the CPU
    folder = teacher_folder(t.teacher.path)
    teacher_cfg = t.teacher.model_dump(mode="json", exclude={"label_batch_size"})
    arts: dict[str, Artifact] = {}
    arts["teacher"] = ctx.stage("teacher", {"data": r.section("data"), "data_fingerprint": ds.fingerprint, "seed": r.seed,
                                            "teacher": teacher_cfg, "teacher_files": folder_digest(folder), **on}, [], teacher)
    distill_parents = [arts["teacher"]]
    if r.distill.enabled:
        arts["transfer"] = ctx.stage("transfer", {"augment": t.augment.model_dump(mode="json"), "seed": r.seed,
                                                  "max_length": t.teacher.max_length, **on}, [arts["teacher"]], transfer)
        distill_parents.append(arts["transfer"])
    arts["distill"] = ctx.stage("distill", {"student": t.student.model_dump(mode="json"), "distill": r.section("distill"),
                                            "seed": r.seed, **on}, distill_parents, distill)
    arts["export"] = ctx.stage("export", {"export": r.section("export")}, [arts["distill"]], export)
    if r.quantize.enabled:
        arts["quantize"] = ctx.stage("quantize", {"quantize": r.section("quantize")}, [arts["export"]], quantize)
    deployed = arts.get("quantize", arts["export"])
    arts["engine"] = ctx.stage("engine", {"engine": r.section("engine"), "backend": backend},
                               [deployed], engine)
    models = [arts[s] for s in ("teacher", "distill", "export", "quantize") if s in arts]
    arts["verify"] = ctx.stage("verify", {"verify": r.section("verify"), "test_limit": t.test_limit},
                               [*models, arts["engine"]], verify)
    if r.bench.enabled:
        machine = {"node": platform.node(), "cpu": platform.processor() or platform.machine()}
        arts["bench"] = ctx.stage("bench", {"bench": r.section("bench"), "machine": machine, "results_schema": SCHEMA},
                                  [*models, arts["engine"]], bench)
    return arts


def text_backend(requested: str) -> str:
    """Text models run on ONNX Runtime: its dynamic INT8 LSTM (``DynamicQuantizeLSTM``) is an ORT op."""
    if requested in ("auto", "onnxruntime"):
        return "onnxruntime"
    raise RecipeError(f"engine.backend: {requested} cannot run the text student (dynamic INT8 LSTM is an ONNX Runtime op)",
                      hint="set engine.backend: auto or onnxruntime for text recipes")


def _parent(work: StageWork, stage: str) -> Artifact:
    from edgec.stages import parent

    return parent(work, stage)


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
    from edgec.stages.train import training_device

    return training_device(ctx)


def teacher(ctx: BuildContext, work: StageWork) -> None:
    """Fine-tune the teacher on the training split; save it flat (config, weights, tokenizer)."""
    from edgec.text.teacher import (TeacherTrainConfig, count_teacher_params, fine_tune, load_teacher,
                                    predict_logits, save_teacher)

    t, ds = ctx.recipe.text.teacher, ctx.dataset
    folder = teacher_folder(t.path)
    model, tok = load_teacher(folder)
    model = model.to(_device(ctx))
    cfg = TeacherTrainConfig(**t.model_dump(exclude={"path", "label_batch_size"}), seed=ctx.recipe.seed)
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
    from edgec.text.augment import AugmentConfig, Augmenter
    from edgec.text.distill import label_transfer, transfer_set
    from edgec.text.teacher import load_teacher

    r, ds = ctx.recipe, ctx.dataset
    a = r.text.augment
    augmenter = None
    if a.enabled:
        cfg = AugmentConfig(p_mask=a.p_mask, p_pos=a.p_pos, p_ng=a.p_ng, ngram_max=a.ngram_max, n_iter=a.n_iter)
        augmenter = Augmenter.fit(ds.train.sentences, cfg)
    sentences, gold, source = transfer_set(ds.train.sentences, ds.train.y, augmenter, a.max_sentences, seed=r.seed)
    n_orig = len(ds.train)
    say(f"  transfer set: {n_orig:,} original + {len(sentences) - n_orig:,} augmented sentences")
    model, tok = load_teacher(_parent(work, "teacher").path)
    model = model.to(_device(ctx))
    logits = label_transfer(model, tok, sentences, batch_size=r.text.teacher.label_batch_size,
                            max_length=r.text.teacher.max_length, progress=ctx.progress)
    atomic_write_json(work.path / "transfer.json", {"sentences": sentences, "gold": gold.tolist(), "source": source.tolist()})
    np.save(work.path / "logits.npy", logits)
    agree = float((logits[:n_orig].argmax(1) == ds.train.y).mean())
    work.metrics.update(originals=n_orig, augmented=len(sentences) - n_orig,
                        augmented_sources=int(len(set(source[n_orig:].tolist()))),
                        teacher_train_accuracy=agree, tagger="pattern Brill tagger (textblob)" if a.enabled else None)


def load_transfer(art: Artifact) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(sentences, gold, teacher logits)`` of a transfer artifact (JSON + ``.npy``, no pickle)."""
    data = json.loads(art.file("transfer.json").read_text(encoding="utf-8"))
    logits = np.load(art.file("logits.npy"), allow_pickle=False)
    return data["sentences"], np.asarray(data["gold"], dtype=np.int64), logits


def student_init(teacher_path: Path, vocab, spec) -> np.ndarray | None:
    """Embedding init from the teacher's word-piece table (``spec.embed_init: teacher``), else None.

    The same init serves the distilled and the plain student, so their comparison is fair.
    """
    from edgec.text.student import teacher_embedding_init
    from edgec.text.teacher import load_teacher
    from edgec.text.vocab import MASK, UNK

    if spec.embed_init != "teacher":
        return None
    model, tok = load_teacher(teacher_path)
    table = model.get_input_embeddings().weight.detach().numpy()
    return teacher_embedding_init(vocab.words, tok, table, spec.embed_dim, {MASK: tok.mask_token, UNK: tok.unk_token})


def distill(ctx: BuildContext, work: StageWork) -> None:
    """Vocabulary from the training split, then the BiLSTM: distilled (MSE on logits) or plain (CE)."""
    from edgec.stages.train import CHECKPOINT, train_config
    from edgec.text.distill import build_student, train_student
    from edgec.text.student import count_params, lstm_macs, save_student
    from edgec.text.vocab import Vocab

    r, ds = ctx.recipe, ctx.dataset
    s = r.text.student
    vocab = Vocab.build(ds.train.sentences, max_size=s.vocab_size, min_freq=s.min_freq)
    params = {"embed_dim": s.embed_dim, "hidden": s.hidden, "mlp_hidden": s.mlp_hidden, "dropout": s.dropout,
              "num_classes": ds.num_classes}
    model = build_student(vocab, params, student_init(_parent(work, "teacher").path, vocab, s), seed=r.seed)
    model = model.to(_device(ctx))
    cfg = train_config(r.distill.train, r.seed)
    work.scratch.add(CHECKPOINT)
    val = (ds.val.sentences, ds.val.y)
    if r.distill.enabled:
        sentences, gold, logits = load_transfer(_parent(work, "transfer"))
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
    from edgec.text.vocab import Vocab

    return Vocab.load(vocab_path).encode(ctx.dataset.test.sentences)[0]


def export(ctx: BuildContext, work: StageWork) -> None:
    """Student -> FP32 ONNX (LSTM op, dynamic batch and sequence), ONNX checker, parity with torch."""
    import shutil

    from edgec.export.files import describe_io
    from edgec.text.onnx import export_student, op_counts, student_parity
    from edgec.text.student import load_student

    e = ctx.recipe.export
    src = _parent(work, "distill")
    model = load_student(src.file(STUDENT))
    path = export_student(model, work.path / "model.onnx", opset=e.opset)
    shutil.copyfile(src.file(VOCAB), work.path / VOCAB)  # the vocabulary travels with the model
    ids = test_ids(ctx, src.file(VOCAB))[:256]
    parity = student_parity(model, path, ids, atol=e.parity_atol, rtol=e.parity_rtol)
    work.metrics.update(parity=parity.to_dict(), io=describe_io(path), ops=op_counts(path), vocab=VOCAB,
                        deploy_files=[VOCAB])  # edgec.deploy ships it beside the model
    say(f"  parity torch vs ONNX Runtime: max |diff| {parity.max_abs_diff:.2e}, top-1 agreement {parity.top1_agreement:.3f}")


def quantize(ctx: BuildContext, work: StageWork) -> None:
    """Dynamic INT8 (DynamicQuantizeLSTM, MatMulInteger, INT8 embedding table) in ONNX Runtime."""
    from edgec.text.onnx import op_counts, quantize_student

    out = quantize_student(_parent(work, "export").file("model.onnx"), work.path / "model.int8.onnx")
    ops = op_counts(out)
    work.metrics.update(kind="int8", file=out.name, method="ort_dynamic", bits=8, ops=ops)
    say(f"  INT8: {ops.get('DynamicQuantizeLSTM', 0)} DynamicQuantizeLSTM, {ops.get('MatMulInteger', 0)} MatMulInteger")


def engine(ctx: BuildContext, work: StageWork) -> None:
    """Open the deployable ONNX in the backend, run one real sentence, record what ran."""
    from edgec.runtimes import open_runner

    (src,) = work.parents
    name = src.metrics["file"] if src.stage == "quantize" else "model.onnx"
    model_file = src.file(name)
    backend = work.config["backend"]  # resolved once, before any training (run_text)
    threads = ctx.recipe.engine.intra_op_threads
    with open_runner(model_file, runtime=backend, **thread_options(backend, threads)) as runner:
        runner.infer(np.array([[3, 4, 5]], dtype=np.int64))  # three ordinary word ids
        described = runner.describe()
    info = {"backend": backend, "model": f"{src.stage}-{src.key}/{name}", "model_sha256": sha256_file(model_file),
            "runner": described}
    atomic_write_json(work.path / "engine.json", info)
    work.metrics.update(info)


def model_files(arts: dict[str, Artifact]) -> dict[str, tuple[Path, str, Artifact]]:
    """Report name -> (file, runtime, artifact with params/FLOPs), as :func:`edgec.stages.check.model_files`."""
    out = {"teacher": (arts["teacher"].file(TEACHER_WEIGHTS), "torch", arts["teacher"]),
           "student": (arts["distill"].file(STUDENT), "torch", arts["distill"]),
           "student_fp32_onnx": (arts["export"].file("model.onnx"), "onnxruntime", arts["distill"])}
    q = arts.get("quantize")
    if q is not None:
        out["student_int8"] = (q.file(q.metrics["file"]), arts["engine"].metrics["backend"], arts["distill"])
    return out


class TextInputs:
    """Per-model inputs for the same sentences: word-piece ids (teacher) or vocabulary ids (student)."""

    def __init__(self, work: StageWork):
        from edgec.text.teacher import load_teacher
        from edgec.text.vocab import Vocab

        arts = {a.stage: a for a in work.parents}
        self.files = model_files(arts)
        self.teacher, self.tokenizer = load_teacher(arts["teacher"].path)
        self.vocab = Vocab.load(arts["export"].file(VOCAB))

    def ids(self, name: str, sentences: list[str]) -> np.ndarray:
        if name == "teacher":
            from edgec.text.teacher import teacher_text

            enc = self.tokenizer(teacher_text(sentences, self.tokenizer), padding=True, truncation=True,
                                 max_length=512, return_tensors="np")
            return enc["input_ids"].astype(np.int64)
        return self.vocab.encode(sentences)[0]

    def open(self, name: str, threads: int | None = None):
        """A Runner for model ``name`` (torch models wrapped to take int64 ids)."""
        from edgec.runtimes import open_runner
        from edgec.runtimes.torch_runner import TorchRunner

        path, runtime, _ = self.files[name]
        if runtime != "torch":
            return open_runner(path, runtime=runtime, **thread_options(runtime, threads))
        if name == "teacher":
            from edgec.text.teacher import ids_module

            module = ids_module(self.teacher, self.tokenizer.pad_token_id)
        else:
            from edgec.text.student import load_student

            module = load_student(path)
        return TorchRunner(module, input_dtype="int64", **thread_options("torch", threads))


def verify(ctx: BuildContext, work: StageWork) -> None:
    """Accuracy of every model on the test sentences; INT8 vs FP32 agreement within the verify tolerances."""
    from edgec.text.teacher import predict_logits

    test = ctx.dataset.test
    inputs = TextInputs(work)
    preds, results = {}, {}
    for name, (_, runtime, _) in inputs.files.items():
        if name == "teacher":  # length-sorted batches: the teacher is the slow one
            logits = predict_logits(inputs.teacher, inputs.tokenizer, test.sentences,
                                    max_length=ctx.recipe.text.teacher.max_length)
        else:
            from edgec.runtimes import predict

            with inputs.open(name) as runner:
                logits = predict(runner, inputs.ids(name, test.sentences))
        preds[name] = logits.argmax(axis=1)
        acc = float((preds[name] == test.y).mean())
        results[name] = {"accuracy": acc, "runtime": runtime, "n": len(test)}
        say(f"  {name:<18} {runtime:<12} accuracy {acc:.4f} on {len(test)} test sentences")
    work.metrics["models"] = results
    problems = int8_problems(preds, results, ctx.recipe.verify, work.metrics)
    atomic_write_json(work.path / "verify.json", work.metrics)
    if problems:
        raise VerificationFailed("verification failed: " + "; ".join(problems),
                                 hint="train the student longer or relax the verify tolerances if this is acceptable")


def bench(ctx: BuildContext, work: StageWork) -> None:
    """Latency at batch 1 (the median-length test sentence, unpadded) and at ``bench.batch_size``
    (the first test sentences, padded to their longest), every model on its own token ids."""
    from edgec.bench.run import Timing, bench_model

    b, test = ctx.recipe.bench, ctx.dataset.test
    timing = Timing(warmup_runs=b.warmup_runs, warmup_s=b.warmup_s, min_runs=b.min_runs, min_duration_s=b.min_duration_s)
    batches = sorted({1, b.batch_size})
    one = median_sentence(test.sentences)
    inputs = TextInputs(work)
    results = {}
    for name in inputs.files:
        feeds = {1: inputs.ids(name, [one]), b.batch_size: inputs.ids(name, (test.sentences * b.batch_size)[:b.batch_size])}
        entry = bench_model(lambda n=name: inputs.open(n, b.threads), feeds.__getitem__, batches, timing,
                            energy_skipped="edgec build does not measure energy; run `edgec bench --energy auto`")
        entry["inputs"] = [{"name": "input_ids" if name != "teacher" else "input", "shape": list(feeds[1].shape[1:]),
                            "dtype": "int64", "source": f"median-length test sentence: {one!r}"}]
        results[name] = entry
    write_bench(ctx, work, results, timing, batches)

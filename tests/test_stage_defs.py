"""Stages as data (edgec.stages.defs / tasks): parent slots, declared outputs, the loop, the stage tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgec.artifacts import ArtifactStore
from edgec.build_context import BuildContext
from edgec.recipe import load_recipe, parse_recipe
from edgec.stages.defs import Outputs, StageDef, Task, resolve_parents, run_chain
from edgec.stages.tasks import IMAGES, TEXT, task_for


def _store_with(tmp_path: Path, *names: str):
    """Finished artifacts (one small file each) named after stages."""
    store = ArtifactStore(tmp_path / "run")
    arts = {}
    for name in names:
        with store.build(name, name, config={}, parents=[]) as work:
            (work.path / "f.txt").write_text(name)
        arts[name] = work.artifact
    return arts


def test_parent_slots(tmp_path):
    arts = _store_with(tmp_path, "teacher", "distill", "prune")
    got = resolve_parents(("prune|distill", "teacher", "quantize?"), arts)
    assert [a.stage for a in got] == ["prune", "teacher"]  # first present alternative; absent optional skipped
    del arts["prune"]
    assert [a.stage for a in resolve_parents(("prune|distill",), arts)] == ["distill"]
    with pytest.raises(KeyError, match="export"):
        resolve_parents(("export",), arts)


def _task(chain) -> Task:
    return Task(name="t", load_dataset=lambda r: None, chain=tuple(chain), models=(), inputs=lambda c, w: None,
                sample=lambda ds: None, resolve_backend=lambda b: b, verify_hint="")


def _write(name: str, metrics: dict):
    def fn(ctx, work):
        (work.path / name).write_text("x")
        work.metrics.update(metrics)
    return fn


def test_run_chain_runs_enabled_stages_with_their_parents_and_reuses_them(tmp_path):
    recipe = load_recipe("digits")
    chain = [StageDef("a", _write("a.txt", {"n": 1}), config=lambda ctx, arts: {"seed": ctx.recipe.seed},
                      outputs=Outputs(files=("a.txt",), metrics=("n",), model="a.txt")),
             StageDef("off", _write("o.txt", {}), config=lambda ctx, arts: {}, enabled=lambda r: False),
             StageDef("b", _write("b.txt", {}), parents=("off|a", "off?"), config=lambda ctx, arts: {})]
    ctx = BuildContext(recipe, ArtifactStore(tmp_path / "run"), progress=False, task=_task(chain))
    arts = run_chain(ctx, ctx.task)
    assert list(arts) == ["a", "b"] and ctx.ran == ["a", "b"]
    assert arts["b"].manifest["parents"] == {"a": arts["a"].key}
    assert ctx.task.stage("a").outputs.model_file(arts["a"]).read_text() == "x"
    again = BuildContext(recipe, ArtifactStore(tmp_path / "run"), progress=False, task=_task(chain))
    run_chain(again, again.task)
    assert again.ran == [] and again.reused == ["a", "b"]


@pytest.mark.parametrize("metrics,missing", [({}, "metric 'n'"), ({"n": 1, "file": "gone.onnx"}, "gone.onnx")])
def test_a_stage_that_breaks_its_declared_outputs_fails(tmp_path, metrics, missing):
    chain = [StageDef("a", _write("a.txt", metrics), config=lambda ctx, arts: {},
                      outputs=Outputs(files=("a.txt",), metrics=("n",), model_metric="file"))]
    ctx = BuildContext(load_recipe("digits"), ArtifactStore(tmp_path / "run"), progress=False, task=_task(chain))
    with pytest.raises(RuntimeError, match=f"stage a did not produce its declared outputs: {missing}"):
        run_chain(ctx, ctx.task)
    published = [p for p in (tmp_path / "run").iterdir() if p.name.startswith("a-") and not p.name.endswith(".work")]
    assert published == []


def test_task_for_recipe():
    assert task_for(load_recipe("digits")) is IMAGES
    assert task_for(parse_recipe({"edgec": 1, "data": {"name": "sst2"}, "distill": {"method": "mse"},
                                  "export": {"exporter": "torchscript"}})) is TEXT


@pytest.mark.parametrize("task", [IMAGES, TEXT], ids=lambda t: t.name)
def test_stage_tables_are_consistent(task):
    names = [d.name for d in task.chain]
    assert len(set(names)) == len(names)
    for i, d in enumerate(task.chain):
        slots = d.parents if isinstance(d.parents, tuple) else ("quantize|export", "prune|distill")
        for slot in slots:  # every parent is an earlier stage of the chain
            assert all(n in names[:i] or (n == "prune" and "prune" not in names)
                       for n in slot.rstrip("?").split("|")), (d.name, slot)
    for m in task.models:  # every reported model is a declared model output of its stage
        for stage in m.stages:
            out = task.stage(stage).outputs
            assert out.model is not None or out.model_metric is not None, stage
    trains = {d.name for d in task.chain if d.all_ranks(load_recipe("digits"))}
    assert {"teacher", "distill"} <= trains and not trains & {"export", "engine", "verify", "bench", "quantize"}


def test_readers_read_only_declared_metric_keys(tmp_path):
    store = ArtifactStore(tmp_path / "run")
    with store.build("quantize", "k", config={}, parents=[]) as work:
        (work.path / "model.int8.onnx").write_text("x")
        work.metrics.update(kind="int8", file="model.int8.onnx", secret=1)
    m = IMAGES.metrics(work.artifact)
    assert m["kind"] == "int8" and m.get("files") is None and "bits" not in m  # declared (optional) keys
    assert set(m) == {"kind", "file"}
    with pytest.raises(KeyError, match="declares no metric 'secret'"):
        m["secret"]
    with pytest.raises(KeyError, match="declares no metric 'fille'"):
        m.get("fille")

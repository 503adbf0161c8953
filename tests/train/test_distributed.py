"""Distributed training on this machine's CPUs: two gloo ranks launched by torchrun.

What is checked, and the tolerances (see docs/distributed.md for why they are what they are):
- ``edgec build --nproc 2`` of the default recipe (epochs shortened) reaches the same test accuracy
  as one process with the same global batch within **3 points** (teacher, student, INT8 student).
  Not bit-identical: each rank's BatchNorm normalises with its half-batch's statistics (SyncBatchNorm
  has no CPU implementation) and float sums run in another order.
- Taylor scores reduced over 2 ranks equal the single-process scores on the same global batches to
  1e-9 (relative), so the first pruning step removes exactly the same channels; every later step
  removes the same channels on every rank (compared here, and checked by the library at each step).
- Ranks launched with different recipes stop with a RecipeError naming the rank that differs.
- A checkpoint written by 2 ranks resumes in 1 process (data re-sharded, epoch kept).

This file is also the torchrun worker: ``python -m torch.distributed.run ... test_distributed.py OUT``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

HERE = Path(__file__).resolve()
TOLERANCE = 0.03  # absolute test accuracy, 1 vs 2 processes (359 test images: ~11 images)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "EDGEC_DIST_BACKEND": "gloo"}


def _digits_short(folder: Path, **changes) -> Path:
    """The default recipe with few epochs, TorchScript export, pruning on and no bench."""
    from importlib import resources

    r = yaml.safe_load(resources.files("edgec.recipes").joinpath("digits.yaml").read_text())
    r["teacher"]["train"]["epochs"] = 6
    r["distill"]["train"]["epochs"] = 6
    r["export"]["exporter"] = "torchscript"
    r["bench"] = {"enabled": False}
    r["train"] = {"device": "cpu"}  # gloo ranks train on CPUs: the 1-process build must too (same keys), GPU or not
    r["prune"] = {"enabled": True, "criterion": "taylor", "target_flops": 0.7, "num_steps": 2,
                  "finetune_batches": 5, "criterion_batches": 2,
                  "train": {"epochs": 2, "optimizer": "sgd", "lr": 0.01}}
    r.update(changes)
    path = folder / "digits-short.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


# ---------------------------------------------------------------- the torchrun worker (2 ranks)

def _model_and_data():
    from edgec.data import load_dataset
    from edgec.models import ModelSpec
    from edgec.train import set_seed

    ds = load_dataset("digits", None, val_fraction=0.1, test_fraction=0.2, seed=0)
    spec = ModelSpec(name="fitnet", params={"widths": [8, 16, 32], "convs_per_stage": 1},
                     in_channels=1, num_classes=10, input_size=(8, 8))
    set_seed(0)
    return ds, spec, spec.build()


def _taylor(model, ds, batches: int = 3):
    """Taylor scores of ``model`` on the first ``batches`` global batches of a seeded stream."""
    import torch

    from edgec import distributed
    from edgec.compress.prune_criteria import criterion_scores
    from edgec.compress.prune_graph import channel_groups
    from edgec.compress.prune_schedule import BatchStream

    x, y = torch.from_numpy(ds.train.x), torch.from_numpy(ds.train.y).long()
    data = BatchStream(x, y, 64, seed=0, device=torch.device("cpu")).take(batches)
    raw = criterion_scores("taylor", model, channel_groups(model), data)
    return distributed.mean_over_samples(raw, sum(len(b[1]) for b in data))


def _worker(out: Path) -> None:
    import torch

    from edgec import distributed
    from edgec.compress.prune import prune
    from edgec.configs import PruneConfig
    from edgec.errors import RecipeError
    from edgec.pipeline import build
    from edgec.train import TrainConfig, fit

    torch.set_num_threads(1)
    with distributed.session():
        r = distributed.rank()
        result: dict = {"rank": r, "world": distributed.world_size()}
        # 1. ranks that disagree on the recipe (rank 1 has another seed)
        (out / f"rank{r}").mkdir()
        recipe = _digits_short(out / f"rank{r}", seed=r)
        try:
            build(recipe, out=out / "disagree", progress=False)
        except RecipeError as exc:
            result["disagree"] = exc.message
        # 2. Taylor scores over two shards of the same batches
        ds, spec, model = _model_and_data()
        result["taylor"] = {k: v.tolist() for k, v in _taylor(model, ds).items()}
        # 3. a whole pruning run: which channels each rank keeps
        finetune = TrainConfig(epochs=0, lr=1e-2, optimizer="sgd", momentum=0.9, batch_size=64, scheduler="none")
        pr = prune(model, spec, (ds.train.x, ds.train.y), (ds.val.x, ds.val.y),
                   PruneConfig(criterion="taylor", target_flops=0.6, num_steps=2, finetune_batches=4,
                               criterion_batches=2, train=finetune), progress=False)
        result["channels"] = pr.report["channels"]
        # 4. a checkpoint written by 2 ranks, interrupted after epoch 1 (the test resumes it alone)
        cfg = TrainConfig(epochs=3, batch_size=64, lr=3e-3, seed=0)

        def stop(epoch: int, _epochs: int) -> None:
            if epoch == 2:
                raise KeyboardInterrupt

        _, _, m2 = _model_and_data()
        try:
            fit(m2, (ds.train.x, ds.train.y), (ds.val.x, ds.val.y), cfg, workdir=out / "ckpt",
                progress=False, on_epoch_start=stop)
        except KeyboardInterrupt:
            result["interrupted"] = True
        _, _, m3 = _model_and_data()
        full = fit(m3, (ds.train.x, ds.train.y), (ds.val.x, ds.val.y), cfg, progress=False)
        result["full_history"] = full.history
        (out / f"result{r}.json").write_text(json.dumps(result))


# ---------------------------------------------------------------- the tests

@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ranks")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(HERE), str(out)], env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((out / f"result{r}.json").read_text()) | {"out": str(out)} for r in (0, 1)]


def test_ranks_that_disagree_on_the_recipe_get_a_clear_error(two_ranks):
    for res in two_ranks:
        assert res["world"] == 2
        assert "ranks disagree on the recipe and data: rank(s) 1 differ from rank 0" in res["disagree"]
    assert not list(Path(two_ranks[0]["out"], "disagree").glob("teacher-*"))  # nothing trained


def test_taylor_scores_reduced_over_ranks_equal_one_process(two_ranks, one_torch_thread):
    import torch

    from edgec.compress.prune_schedule import choose_maps

    ds, _, model = _model_and_data()
    single = _taylor(model, ds)
    for res in two_ranks:
        assert res["taylor"].keys() == single.keys()
        for name, scores in single.items():
            np.testing.assert_allclose(res["taylor"][name], scores.numpy(), rtol=1e-9, atol=1e-15)
    sizes = {k: len(v) for k, v in single.items()}
    floors = dict.fromkeys(sizes, 1)
    pick = [choose_maps({k: torch.as_tensor(v) for k, v in scores.items()}, sizes, floors, 1, 8, lambda s: False)
            for scores in (single, two_ranks[0]["taylor"], two_ranks[1]["taylor"])]
    assert pick[0] == pick[1] == pick[2] and pick[0]


def test_pruning_removes_the_same_channels_on_every_rank(two_ranks):
    assert two_ranks[0]["channels"] == two_ranks[1]["channels"]
    assert two_ranks[0]["channels"]  # something was pruned


def test_checkpoint_of_two_ranks_resumes_in_one_process(two_ranks, one_torch_thread):
    from edgec.train import TrainConfig, fit

    ds, _, model = _model_and_data()
    assert all(r.get("interrupted") for r in two_ranks)
    result = fit(model, (ds.train.x, ds.train.y), (ds.val.x, ds.val.y),
                 TrainConfig(epochs=3, batch_size=64, lr=3e-3, seed=0),
                 workdir=Path(two_ranks[0]["out"]) / "ckpt", progress=False)
    full = two_ranks[0]["full_history"]
    assert result.resumed_from_epoch == 1
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history[0]["val_accuracy"] == full[0]["val_accuracy"]  # the 2-rank epoch, kept
    assert abs(result.history[-1]["val_accuracy"] - full[-1]["val_accuracy"]) <= 0.05
    assert result.history[-1]["val_accuracy"] > 0.8


def test_build_on_two_processes_matches_one_process(tmp_path, one_torch_thread):
    from edgec.pipeline import build

    recipe = _digits_short(tmp_path)
    one = build(recipe, out=tmp_path / "one", progress=False)
    proc = subprocess.run([sys.executable, "-m", "edgec", "build", str(recipe), "--nproc", "2", "--quiet",
                           "--out", str(tmp_path / "two")], env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    assert two["models"].keys() == one.report["models"].keys()
    for name in ("teacher", "student", "student_int8"):
        a, b = one.report["models"][name]["accuracy"], two["models"][name]["accuracy"]
        assert abs(a - b) <= TOLERANCE, f"{name}: 1 process {a:.4f}, 2 processes {b:.4f}"
        assert b > 0.9
    # rank 0 alone published: finished stage folders, no unfinished .work folder left behind
    folders = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "two").iterdir() if p.is_dir())
    assert {"teacher", "distill", "prune", "export", "quantize", "verify"} <= set(folders)
    assert not list((tmp_path / "two").glob("*.work"))
    # same stage keys: a 2-process run reuses a 1-process run's stages and vice versa
    assert sorted(p.name for p in (tmp_path / "two").glob("teacher-*")) == \
        sorted(p.name for p in (tmp_path / "one").glob("teacher-*"))


def test_nproc_is_validated():
    from edgec.distributed import launch
    from edgec.errors import EdgecError

    with pytest.raises(EdgecError, match="--nproc 0"):
        launch(0, ["build"])


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))

"""Artifact store: keys, atomic publication, verification before reuse, interruption."""

from __future__ import annotations

import json

import pytest

from edgec.artifacts import ArtifactStore
from edgec.atomic import atomic_path, atomic_write_text
from edgec.errors import ArtifactError


def _publish(store, stage="teacher", config=None, parents=(), payload=b"weights"):
    config = config or {"a": 1}
    key = store.key(stage, config, list(parents))
    with store.build(stage, key, config=config, parents=list(parents)) as work:
        (work.path / "model.bin").write_bytes(payload)
        (work.path / "checkpoint.pt").write_bytes(b"scratch")
        work.scratch.add("checkpoint.pt")
        work.metrics["accuracy"] = 0.5
    return work.artifact


def test_keys_depend_on_config_and_parents(tmp_path):
    store = ArtifactStore(tmp_path)
    a = _publish(store)
    assert store.key("teacher", {"a": 1}, []) == a.key
    assert store.key("teacher", {"a": 2}, []) != a.key
    b = _publish(store, "distill", {"x": 1}, [a])
    a2 = _publish(store, "teacher", {"a": 2}, payload=b"other weights")
    assert store.key("distill", {"x": 1}, [a2]) != b.key
    a3 = _publish(store, "teacher", {"a": 3})  # other config, identical bytes: children stay valid
    assert store.key("distill", {"x": 1}, [a3]) == b.key


def test_publish_writes_manifest_and_drops_scratch(tmp_path):
    store = ArtifactStore(tmp_path)
    art = _publish(store)
    assert art.path.name == f"teacher-{art.key}" and not art.path.with_name(art.path.name + ".work").exists()
    manifest = json.loads((art.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.bin"}
    assert manifest["metrics"] == {"accuracy": 0.5}
    assert "torch" in manifest["versions"] and manifest["versions"]["edgec"]
    assert not (art.path / "checkpoint.pt").exists()
    assert store.find("teacher", art.key).manifest == manifest


def test_interrupted_stage_leaves_only_work_folder(tmp_path):
    store = ArtifactStore(tmp_path)
    key = store.key("teacher", {}, [])
    with pytest.raises(KeyboardInterrupt):
        with store.build("teacher", key, config={}, parents=[]) as work:
            (work.path / "checkpoint.pt").write_bytes(b"epoch 3")
            raise KeyboardInterrupt
    assert store.find("teacher", key) is None
    work_dir = tmp_path / f"teacher-{key}.work"
    assert (work_dir / "checkpoint.pt").read_bytes() == b"epoch 3"  # kept for resuming
    assert not (tmp_path / f"teacher-{key}").exists()


def test_tampered_artifact_is_discarded(tmp_path):
    store = ArtifactStore(tmp_path)
    art = _publish(store)
    (art.path / "model.bin").write_bytes(b"truncated")
    assert store.find("teacher", art.key) is None
    assert not art.path.exists()


def test_missing_file_in_artifact(tmp_path):
    art = _publish(ArtifactStore(tmp_path))
    with pytest.raises(ArtifactError, match="no file 'other.bin'"):
        art.file("other.bin")


def test_load_by_path(tmp_path):
    store = ArtifactStore(tmp_path)
    art = _publish(store)
    assert store.load(art.path).key == art.key
    with pytest.raises(ArtifactError, match="not a finished"):
        store.load(tmp_path / "teacher-000000000000")


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ArtifactError, match="not writable") as e:
        ArtifactStore(blocker / "run").ensure_writable()
    assert "--out" in str(e.value)


def test_clear_removes_stage_folders_only(tmp_path):
    store = ArtifactStore(tmp_path)
    _publish(store)
    (tmp_path / "deploy").mkdir()
    (tmp_path / "teacher-abc.work").mkdir()
    store.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]


def test_atomic_path_failure_keeps_old_file(tmp_path):
    target = tmp_path / "report.md"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_atomic_files_get_normal_permissions(tmp_path):
    import os
    import stat

    target = atomic_write_text(tmp_path / "deploy.json", "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask

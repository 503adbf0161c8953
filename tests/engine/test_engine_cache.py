"""Engine cache keys, manifests and the refusal to load an engine that is not what was built."""

from __future__ import annotations

import pytest

from edgec.artifacts import ArtifactStore
from edgec.backends import stage_config
from edgec.backends.tensorrt.manifest import engine_key, read_engine_manifest, timing_cache_file, verify_engine, write_engine_manifest
from edgec.backends.tensorrt.builder import BuildSettings
from edgec.errors import ArtifactError
from edgec.recipe import EngineSpec

BASE = ("a" * 64, "10.3.0", ("NVIDIA Orin", "8.7"), {"fp16": False, "max_batch": 64})


def test_cache_key_changes_with_each_of_onnx_version_gpu_and_config():
    key = engine_key(*BASE)
    assert key == engine_key(*BASE)  # deterministic
    others = [engine_key("b" * 64, *BASE[1:]),                                  # ONNX content
              engine_key(BASE[0], "11.4.0", *BASE[2:]),                          # TensorRT version
              engine_key(BASE[0], BASE[1], ("NVIDIA H100", "8.7"), BASE[3]),      # GPU name
              engine_key(BASE[0], BASE[1], ("NVIDIA Orin", "9.0"), BASE[3]),      # compute capability
              engine_key(*BASE[:3], {"fp16": True, "max_batch": 64})]            # build config
    assert key not in others and len(set(others)) == len(others)


def test_engine_stage_key_is_unchanged_for_onnxruntime_and_follows_the_engine_section():
    class Source:
        stage, metrics, manifest = "quantize", {"file": "model.int8.onnx"}, {}

    a = stage_config(EngineSpec(), "onnxruntime", Source())
    assert a == {"engine": EngineSpec().model_dump(mode="json"), "backend": "onnxruntime"}
    b = stage_config(EngineSpec(max_batch=32), "onnxruntime", Source())
    assert ArtifactStore.key("engine", a, []) != ArtifactStore.key("engine", b, [])
    settings = BuildSettings.from_spec(EngineSpec(max_batch=32, fp16=True, dla_core=0))
    assert (settings.max_batch, settings.fp16, settings.dla_core, settings.timing_cache) == (32, True, 0, True)


def _plan(tmp_path, data=b"ENGINE-BYTES", **info):
    plan = tmp_path / "model.plan"
    plan.write_bytes(data)
    write_engine_manifest(plan, {"tensorrt": "10.3.0", "gpu": {"name": "NVIDIA Orin", "compute_capability": "8.7"},
                                 **info})
    return plan


def test_manifest_roundtrip_and_target_checks(tmp_path):
    plan = _plan(tmp_path, key="k1")
    m = verify_engine(plan, "10.3.0", ("NVIDIA Orin", "8.7"))
    assert m["key"] == "k1" and m["bytes"] == len(b"ENGINE-BYTES") and m["file"] == "model.plan"
    with pytest.raises(ArtifactError, match="built by TensorRT 10.3.0, this is TensorRT 11.4.0"):
        verify_engine(plan, "11.4.0", ("NVIDIA Orin", "8.7"))
    with pytest.raises(ArtifactError, match="built for NVIDIA Orin"):
        verify_engine(plan, "10.3.0", ("NVIDIA H100", "9.0"))


def test_tampered_engine_is_refused(tmp_path):
    plan = _plan(tmp_path)
    plan.write_bytes(b"ENGINE-BYTEZ")  # same size, other content
    with pytest.raises(ArtifactError, match="does not match engine.json") as err:
        verify_engine(plan)
    assert "untrusted source" in err.value.hint
    (tmp_path / "g").mkdir()
    good = _plan(tmp_path / "g")
    with pytest.raises(ArtifactError, match="does not match"):  # the bytes handed to TensorRT are checked
        verify_engine(good, data=b"OTHER")


def test_engine_without_or_with_a_foreign_manifest_is_refused(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="no engine.json beside it"):
        verify_engine(plan)
    (tmp_path / "engine.json").write_text('{"format": "edgec.engine/1", "file": "other.plan"}')
    with pytest.raises(ArtifactError, match="describes 'other.plan'"):
        read_engine_manifest(plan)
    (tmp_path / "engine.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="cannot read"):
        read_engine_manifest(plan)


def test_timing_cache_files_are_per_gpu_and_version(tmp_path):
    a = timing_cache_file(tmp_path, "10.3.0", ("NVIDIA Orin (nvgpu)", "8.7"))
    assert a.name == "nvidia-orin-nvgpu-sm87-trt10.3.0.timing-cache" and a.parent == tmp_path
    assert a != timing_cache_file(tmp_path, "10.3.1", ("NVIDIA Orin (nvgpu)", "8.7"))
    assert a != timing_cache_file(tmp_path, "10.3.0", ("NVIDIA Orin (nvgpu)", "8.6"))

"""``TensorRTRunner``: what can be checked without TensorRT here (profile bounds, the manifest check that
comes before anything else); running real engines is in tests/engine/test_tensorrt_e2e.py (marked tensorrt)."""

from __future__ import annotations

import importlib.util

import pytest

from edgec.engine.manifest import write_engine_manifest
from edgec.errors import ArtifactError, MissingDependencyError, ModelError
from edgec.runtimes.tensorrt_runner import TensorRTRunner, check_profile

PROFILE = [(1, 1, 8, 8), (8, 1, 8, 8), (64, 1, 8, 8)]


def test_shapes_inside_the_profile_pass_and_outside_fail_clearly():
    for n in (1, 8, 64):
        check_profile("input", (n, 1, 8, 8), PROFILE)
    check_profile("input", (500, 3), None)  # a static input has no profile to check
    with pytest.raises(ModelError, match="outside the engine's profile") as err:
        check_profile("input", (65, 1, 8, 8), PROFILE)
    assert "engine.max_batch" in err.value.hint
    with pytest.raises(ModelError, match="outside"):
        check_profile("input", (4, 1, 8, 9), PROFILE)
    with pytest.raises(ModelError, match="outside"):
        check_profile("input", (4, 64), PROFILE)  # wrong rank


def _engine(tmp_path, data=b"PLAN"):
    plan = tmp_path / "model.plan"
    plan.write_bytes(data)
    write_engine_manifest(plan, {"tensorrt": "10.3.0", "gpu": {"name": "g", "compute_capability": "8.7"}})
    return plan


def test_tampered_engine_is_refused_before_tensorrt_is_touched(tmp_path):
    plan = _engine(tmp_path)
    plan.write_bytes(b"EVIL")
    with pytest.raises(ArtifactError, match="refusing to load .*sha256"):
        TensorRTRunner(plan)


def test_engine_without_manifest_is_refused(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"PLAN")
    with pytest.raises(ArtifactError, match="no engine.json"):
        TensorRTRunner(plan)
    with pytest.raises(ModelError, match="not found"):
        TensorRTRunner(tmp_path / "missing.plan")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_intact_engine_without_tensorrt_names_the_extra(tmp_path):
    with pytest.raises(MissingDependencyError) as err:
        TensorRTRunner(_engine(tmp_path))
    assert err.value.extra == "trt"

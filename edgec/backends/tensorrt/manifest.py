"""TensorRT engines are executable artifacts: their manifest, their cache key, their timing caches.

An engine (``model.plan``) is only valid for the GPU, the TensorRT version and the build settings
it was built with, and deserializing one runs code TensorRT put in it. So every engine edgec
writes gets ``engine.json`` beside it::

    {"format": "edgec.engine/1", "file": "model.plan", "sha256": "...", "bytes": 123,
     "key": "<engine_key>", "tensorrt": "10.3.0", "gpu": {"name": "Orin", "compute_capability": "8.7"},
     "onnx": {"file": "model.int8.onnx", "sha256": "..."}, "build": {...}, "layers": {...}}

:func:`verify_engine` checks the plan's sha256 against it (and the TensorRT version and GPU
against this machine) *before* TensorRT sees a byte of the file; a file that differs is refused.
:func:`engine_key` is the cache key: a build is reused only when the ONNX bytes, the TensorRT
version, the GPU (name and compute capability) and the build settings are all the same.

Timing caches (TensorRT's measured tactic timings, which make rebuilds fast) are kept per GPU and
TensorRT version: :func:`timing_cache_file`.

Example:
    >>> key = engine_key("ab12...", "10.3.0", ("Orin", "8.7"), {"fp16": False})
    >>> manifest = verify_engine("runs/digits/engine-1a2b/model.plan", "10.3.0", ("Orin", "8.7"))
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from edgec.artifacts import sha256_file, stable_hash
from edgec.atomic import atomic_write_json
from edgec.errors import ArtifactError

__all__ = ["ENGINE_FORMAT", "PLAN", "MANIFEST", "engine_key", "write_engine_manifest", "read_engine_manifest",
           "verify_engine", "check_target", "timing_cache_file", "default_cache_dir"]

ENGINE_FORMAT = "edgec.engine/1"
PLAN = "model.plan"
MANIFEST = "engine.json"


def engine_key(onnx_sha256: str, tensorrt_version: str, gpu: tuple[str, str], build: dict[str, Any]) -> str:
    """16-hex-digit cache key of an engine: ONNX content, TensorRT version, GPU name + compute
    capability and build settings. Any change gives another key, so an engine is never reused
    across any of them.

    Example:
        >>> engine_key("0" * 64, "10.3.0", ("Orin", "8.7"), {}) != engine_key("0" * 64, "11.0.0", ("Orin", "8.7"), {})
        True
    """
    return stable_hash({"onnx_sha256": onnx_sha256, "tensorrt": tensorrt_version, "gpu": list(gpu),
                        "build": build})[:16]


def write_engine_manifest(plan: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Write ``engine.json`` beside ``plan`` with the plan's sha256 and size plus ``info``; return it."""
    manifest = {"format": ENGINE_FORMAT, "file": plan.name, "sha256": sha256_file(plan),
                "bytes": plan.stat().st_size, **info}
    atomic_write_json(plan.with_name(MANIFEST), manifest)
    return manifest


def read_engine_manifest(plan: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``engine.json`` beside ``plan`` (ArtifactError when missing, unreadable or not for this file)."""
    plan = Path(plan)
    path = plan.with_name(MANIFEST)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"refusing to load {plan}: no {MANIFEST} beside it, so its origin cannot be checked",
                            hint="TensorRT engines are executable: load only engines edgec built (they come "
                                 "with engine.json); rebuild it with `edgec build` on this machine") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {path}: {exc}", hint="rebuild the engine with `edgec build`") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != ENGINE_FORMAT:
        raise ArtifactError(f"{path} is not an {ENGINE_FORMAT} manifest", hint="rebuild the engine with `edgec build`")
    if manifest.get("file") != plan.name:
        raise ArtifactError(f"{path} describes {manifest.get('file')!r}, not {plan.name!r}",
                            hint="keep each engine in its own folder with its own engine.json")
    return manifest


def verify_engine(plan: str | os.PathLike[str], tensorrt_version: str | None = None,
                  gpu: tuple[str, str] | None = None, data: bytes | None = None) -> dict[str, Any]:
    """Check ``plan`` against its manifest before it is deserialized; return the manifest.

    Refuses (ArtifactError) a plan whose sha256 differs from the manifest's, and, when given, an
    engine built by another TensorRT version or for another GPU. Pass the bytes about to be
    deserialized as ``data``, so that exactly those bytes are checked (not a re-read of the file).

    Example:
        >>> verify_engine("engine-1a2b/model.plan")["tensorrt"]       # doctest: +SKIP
        '10.3.0'
    """
    plan = Path(plan)
    manifest = read_engine_manifest(plan)
    actual = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(plan)
    if actual != manifest.get("sha256"):
        raise ArtifactError(f"refusing to load {plan}: its sha256 {actual[:12]}... does not match "
                            f"{MANIFEST} ({str(manifest.get('sha256'))[:12]}...)",
                            hint="the engine was changed or replaced after it was built; never load an engine "
                                 "from an untrusted source: rebuild it with `edgec build`")
    check_target(plan, manifest, tensorrt_version, gpu)
    return manifest


def check_target(plan: Path, manifest: dict[str, Any], tensorrt_version: str | None,
                 gpu: tuple[str, str] | None) -> None:
    """ArtifactError when the engine was built by another TensorRT version or for another GPU
    (a None argument is not checked)."""
    if tensorrt_version is not None and manifest.get("tensorrt") != tensorrt_version:
        raise ArtifactError(f"{plan} was built by TensorRT {manifest.get('tensorrt')}, this is TensorRT "
                            f"{tensorrt_version}", hint="engines are tied to the TensorRT version: rebuild it here")
    built_for = manifest.get("gpu") or {}
    if gpu is not None and (built_for.get("name"), built_for.get("compute_capability")) != tuple(gpu):
        raise ArtifactError(f"{plan} was built for {built_for.get('name')} (compute capability "
                            f"{built_for.get('compute_capability')}), this GPU is {gpu[0]} ({gpu[1]})",
                            hint="engines are tied to the GPU: build it on the target with `edgec build`")


def default_cache_dir() -> Path:
    """``$EDGEC_TRT_CACHE``, else ``~/.cache/edgec/tensorrt``."""
    env = os.environ.get("EDGEC_TRT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edgec" / "tensorrt"


def timing_cache_file(cache_dir: str | os.PathLike[str], tensorrt_version: str, gpu: tuple[str, str]) -> Path:
    """The timing cache of one (GPU, TensorRT version): timings from one GPU are wrong for another.

    Example:
        >>> timing_cache_file("/c", "10.3.0", ("NVIDIA Orin (nvgpu)", "8.7")).name
        'nvidia-orin-nvgpu-sm87-trt10.3.0.timing-cache'
    """
    slug = re.sub(r"[^a-z0-9]+", "-", gpu[0].lower()).strip("-") or "gpu"
    version = re.sub(r"[^0-9A-Za-z.]+", "_", tensorrt_version)
    return Path(cache_dir) / f"{slug}-sm{gpu[1].replace('.', '')}-trt{version}.timing-cache"

"""Artifacts: one folder per finished stage, keyed like a build system, verified before reuse.

Layout of a run folder (``--out``, default ``runs/<recipe>``)::

    runs/digits/
      teacher-3f9c2a1b7d4e/        a finished stage: its files + manifest.json
      distill-91ab03cc2e10/
      distill-91ab03cc2e10.work/   an unfinished stage: checkpoints kept so the next build resumes
      deploy/  report.md  report.json  report.png

A stage's **key** hashes its own config, its parents' *content* (the sha256 of their files) and the
edgec version, so changing one stage's config re-runs that stage and everything downstream whose
input changed, and nothing else; a parent rebuilt to identical bytes leaves its children valid.

A stage writes into ``<stage>-<key>.work/``; when it is done, ``manifest.json`` (sha256 of every
file, parent keys, config, versions, metrics) is written atomically and the folder is renamed to
``<stage>-<key>/`` in one ``os.replace``. So a folder without the ``.work`` suffix *is* a finished
stage, and a crash or Ctrl-C can only ever leave a ``.work`` folder behind. Before a finished stage
is reused its files are checked against the manifest; a mismatch (a file edited or truncated by
hand) discards it and the stage runs again.

Example:
    >>> store = ArtifactStore("runs/digits")
    >>> key = store.key("teacher", {"model": "teacher_cnn"}, parents=[])
    >>> art = store.find("teacher", key)            # None unless finished and intact
    >>> if art is None:
    ...     with store.build("teacher", key, config={...}, parents=[]) as work:
    ...         save_model(model, spec, work.path / "teacher.safetensors")
    ...         work.metrics["val_accuracy"] = 0.98
    ...     art = work.artifact
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from edgec import __version__
from edgec.atomic import atomic_write_json, remove_stale_temporaries
from edgec.console import warn
from edgec.errors import ArtifactError

MANIFEST = "manifest.json"
WORK_SUFFIX = ".work"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj: Any) -> str:
    """Hex sha256 of ``obj`` serialised as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def package_versions() -> dict[str, str]:
    """Versions that an artifact's content depends on, recorded in every manifest."""
    out = {"edgec": __version__, "python": platform.python_version()}
    for dist in ("torch", "onnx", "onnxruntime", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


@dataclass
class Artifact:
    """A finished stage's folder and its manifest."""

    stage: str
    key: str
    path: Path
    manifest: dict[str, Any]

    def file(self, name: str) -> Path:
        """Path of one of this artifact's files; :class:`ArtifactError` if it has no such file."""
        if name not in self.manifest.get("files", {}):
            raise ArtifactError(f"artifact {self.path} has no file '{name}'",
                                hint="run the build again with --force to rebuild it")
        return self.path / name

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.get("metrics", {})

    @property
    def digest(self) -> str:
        """Hash of this artifact's content (its files' sha256), what its children's keys depend on."""
        return stable_hash(self.manifest["files"])


@dataclass
class StageWork:
    """A stage being built: write files into ``path`` and fill ``metrics``."""

    stage: str
    key: str
    path: Path
    config: dict[str, Any]
    parents: list[Artifact]
    metrics: dict[str, Any] = field(default_factory=dict)
    artifact: Artifact | None = None
    scratch: set[str] = field(default_factory=set)  # glob patterns of files (checkpoints) not to publish


class ArtifactStore:
    """The stage folders of one run (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def ensure_writable(self) -> None:
        """Fail early, with a clear message, if the run folder cannot be created or written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".edgec-write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise ArtifactError(f"output folder {self.root} is not writable: {exc.strerror or exc}",
                                hint="choose another folder with --out, or fix its permissions") from None
        remove_stale_temporaries(self.root)

    @staticmethod
    def key(stage: str, config: dict[str, Any], parents: list[Artifact]) -> str:
        """12-hex-digit key of a stage from its config, its parents' content and the edgec version."""
        return stable_hash({"stage": stage, "config": config, "parents": [p.digest for p in parents],
                            "edgec": __version__})[:12]

    def _folder(self, stage: str, key: str) -> Path:
        return self.root / f"{stage}-{key}"

    def find(self, stage: str, key: str) -> Artifact | None:
        """The finished, intact artifact for (stage, key), or None.

        A folder whose files do not match its manifest is removed so that the stage runs again.
        """
        folder = self._folder(stage, key)
        mpath = folder / MANIFEST
        if not mpath.is_file():
            return None
        try:
            manifest = json.loads(mpath.read_text())
            for name, info in manifest["files"].items():
                if sha256_file(folder / name) != info["sha256"]:
                    raise ValueError(f"{name} does not match its sha256")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Damaged by hand or by a disk problem: never trust it, rebuild it.
            shutil.rmtree(folder, ignore_errors=True)
            warn(f"discarded damaged artifact {folder.name} ({exc}); rebuilding it")
            return None
        return Artifact(stage, key, folder, manifest)

    def load(self, path: str | os.PathLike[str]) -> Artifact:
        """Open a finished artifact folder by path, verifying it. :class:`ArtifactError` if it is not intact."""
        folder = Path(path)
        stage, _, key = folder.name.rpartition("-")
        art = ArtifactStore(folder.parent).find(stage, key)
        if art is None:
            raise ArtifactError(f"{folder} is not a finished, intact edgec artifact",
                                hint="rebuild it with `edgec build`")
        return art

    @contextlib.contextmanager
    def build(self, stage: str, key: str, *, config: dict[str, Any],
              parents: list[Artifact]) -> Iterator[StageWork]:
        """Build a stage in its ``.work`` folder and publish it atomically when the block succeeds.

        On an exception (KeyboardInterrupt included) nothing is published and the ``.work``
        folder is kept: it may hold checkpoints that let the next build resume.
        """
        final = self._folder(stage, key)
        work_dir = final.with_name(final.name + WORK_SUFFIX)
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactError(f"cannot create {work_dir}: {exc.strerror or exc}",
                                hint="choose a writable output folder with --out") from None
        work = StageWork(stage, key, work_dir, config, parents)
        t0 = time.perf_counter()
        yield work
        remove_stale_temporaries(work_dir)
        for pattern in work.scratch:
            for p in work_dir.glob(pattern):
                p.unlink(missing_ok=True)
        files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                 for p in sorted(work_dir.iterdir()) if p.is_file() and p.name != MANIFEST}
        manifest = {
            "stage": stage, "key": key, "parents": {p.stage: p.key for p in parents},
            "config": config, "files": files, "metrics": work.metrics,
            "versions": package_versions(), "seconds": round(time.perf_counter() - t0, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_json(work_dir / MANIFEST, manifest)
        if final.exists():  # a damaged copy discarded by find() may be half-removed
            shutil.rmtree(final)
        os.replace(work_dir, final)
        work.artifact = Artifact(stage, key, final, manifest)

    def clear(self) -> None:
        """Remove every stage folder of this run (``--force``); other files are left alone."""
        if not self.root.is_dir():
            return
        for p in self.root.iterdir():
            if p.is_dir() and ((p / MANIFEST).exists() or p.name.endswith(WORK_SUFFIX)):
                shutil.rmtree(p, ignore_errors=True)

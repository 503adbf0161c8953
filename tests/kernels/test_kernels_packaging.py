"""A wheel (``pip install .``, not editable) carries the CUDA sources, and the loader finds them there.

The sources live in the top-level ``kernels/`` folder; pyproject maps it to ``edgec/kernels/cuda/`` in the
wheel and setup.py adds that package to the ones ``find`` sees, so the wheel test also checks that every
module under ``edgec/`` is in the wheel.

The wheel is built from a copy of the source tree (so the checkout gets no ``build/`` folder) with
the already-installed setuptools (``--no-build-isolation``: no network), then unpacked and imported
from the unpacked folder in a fresh interpreter, as a site-packages install would be.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgec.kernels.loader import KERNEL_FILES, kernel_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in ("edgec", "kernels"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = (tmp / "dist").glob("edgec-*.whl")
    return whl


def test_sources_live_in_the_top_level_kernels_folder():
    assert kernel_dir() == ROOT / "kernels"  # a checkout (editable install) reads them there
    assert not (ROOT / "edgec" / "kernels" / "cuda").exists()


def test_wheel_contains_every_kernel_source_and_the_cpu_harness(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"edgec/kernels/cuda/{p.relative_to(kernel_dir()).as_posix()}"
                for p in kernel_dir().rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert {f"edgec/kernels/cuda/{name}.cu" for name in KERNEL_FILES} <= expected
    assert "edgec/kernels/cuda/cpu_harness/harness_io.h" in expected
    missing = expected - names
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert not any(n.startswith("kernels/") for n in names), "kernels/ must not become a top-level folder"


def test_wheel_contains_every_edgec_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "edgec").rglob("*.py")}
    missing = modules - names
    assert not missing, f"not in the wheel (see setup.py): {sorted(missing)}"


def test_loader_finds_the_sources_in_an_unpacked_wheel(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = "from edgec.kernels.loader import kernel_source; print(kernel_source('lowbit_batched_gemv'))"
    r = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == site / "edgec/kernels/cuda/lowbit_batched_gemv.cu"

"""`import edgec` (and the CLI's start-up) must stay light: no tensorrt, pycuda or CUDA init."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("tensorrt", "pycuda", "pynvml", "onnxruntime", "torch")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_edgec_is_light():
    mods = _modules_after("import edgec, edgec.errors, edgec.recipe, edgec.artifacts")
    assert not [m for m in HEAVY if m in mods]


def test_cli_module_does_not_import_gpu_stacks():
    mods = _modules_after("import edgec.cli")
    assert not [m for m in ("tensorrt", "pycuda", "pynvml") if m in mods]
    assert "torch" not in mods  # `edgec --version` / `edgec recipes` start fast


def test_version_matches_metadata():
    from importlib.metadata import version

    import edgec

    assert version("edgec") == edgec.__version__

"""The README's promise, executed: its two commands are the ones CI runs, and `edgec build` works.

The install half of the first command (venv + pip) is what `.ci/run` does on a fresh machine; here
we run its main job, `edgec build` on the default recipe, for real, and check the report's claims
that are not timings (timings belong to benchmarks/build_default.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", quick, re.S)]


def test_readme_has_the_two_commands_and_ci_runs_them():
    install, tests = readme_commands()[:2]
    assert "pip install" in install and install.rstrip().endswith("edgec build")
    test_cmd = tests.split("&&")[-1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci, f"{test_cmd!r} is not what .ci/run runs"
    pip_part = next(p.strip() for p in install.split("&&") if "pip install" in p)
    assert pip_part.split("pip ", 1)[1] in ci


@pytest.mark.slow
def test_default_build_runs_and_meets_its_accuracy_and_size_claims(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgec", "build", "--out", str(tmp_path / "run"), "--quiet"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    m, s = report["models"], report["summary"]
    assert report["recipe"]["name"] == "digits"
    assert s["param_reduction"] >= 5
    assert m["teacher"]["accuracy"] >= 0.95 and m["student"]["accuracy"] >= 0.93
    assert m["student_fp32_onnx"]["accuracy"] - m["student_int8"]["accuracy"] <= 0.01
    assert s["int8_top1_agreement"] >= 0.97
    for name in ("model.onnx", "model.int8.onnx", "deploy.json"):
        assert (tmp_path / "run" / "deploy" / name).is_file()

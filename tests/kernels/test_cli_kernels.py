"""`edgec kernels check`: compiles every kernel for an arch with nvcc and reports spills (no GPU needed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) not installed")


def test_kernels_check_json_rows():
    r = subprocess.run([sys.executable, "-m", "edgec", "kernels", "check", "--arch", "sm_87", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    names = {row["kernel"] for row in rows}
    assert {"int8_gemm_dp4a", "lbgemv_f16_w4_m1"} <= names
    assert all(row["arch"] == "sm_87" and row["ok"] and row["spills"] == 0 for row in rows)


def test_kernels_check_bad_arch_is_bad_input():
    r = subprocess.run([sys.executable, "-m", "edgec", "kernels", "check", "--arch", "sm_99x"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "sm_87" in r.stderr and "Traceback" not in r.stderr

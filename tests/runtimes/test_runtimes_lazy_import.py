"""``import edgec.runtimes`` must stay cheap: no onnxruntime, tensorrt, pycuda, torch or CUDA."""

from __future__ import annotations

import json
import subprocess
import sys


def test_import_runtimes_loads_no_heavy_module():
    code = (
        "import json, sys, edgec.runtimes, edgec.bench, edgec.doctor\n"
        "heavy = ['onnxruntime', 'tensorrt', 'pycuda', 'pynvml', 'torch']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_runner_classes_load_on_first_use():
    code = (
        "import sys, edgec.runtimes as r\n"
        "assert 'onnxruntime' not in sys.modules\n"
        "cls = r.OnnxRuntimeRunner\n"
        "assert 'onnxruntime' in sys.modules and cls.runtime == 'onnxruntime'\n"
        "assert 'tensorrt' not in sys.modules and 'pycuda' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr

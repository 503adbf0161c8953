"""The `edgec` command: exit codes, clear errors without tracebacks, and Ctrl-C then resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.pipeline_helpers import write_recipe

EDGEC = [sys.executable, "-m", "edgec"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGEC, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_version():
    from edgec import __version__

    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"edgec {__version__}"


def test_recipes_lists_and_shows_a_valid_recipe():
    r = run("recipes")
    assert r.returncode == 0 and "digits" in r.stderr + r.stdout
    shown = run("recipes", "--show", "digits")
    from edgec.recipe import parse_recipe

    assert parse_recipe(yaml.safe_load(shown.stdout)).name == "digits"


def test_doctor_json():
    r = run("doctor", "--json")
    assert r.returncode == 0
    report = json.loads(r.stdout)
    names = {c["name"]: c for c in report["checks"]}
    assert names["torch"]["ok"] and names["onnxruntime"]["ok"]


def test_bad_usage_exits_2():
    assert run("frobnicate").returncode == 2
    assert run("build", "--no-such-option").returncode == 2


def test_unknown_recipe_one_line_no_traceback():
    r = run("build", "digts")
    assert r.returncode == 2
    assert "unknown recipe 'digts'" in r.stderr and "did you mean 'digits'" in r.stderr
    assert "Traceback" not in r.stderr


def test_wrong_field_type_exit_2(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("edgec: 1\nbench:\n  min_runs: lots\n")
    r = run("build", str(p), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "bench.min_runs" in r.stderr and "Traceback" not in r.stderr


def test_corrupt_data_file_exit_2(tmp_path):
    data = tmp_path / "mnist"
    data.mkdir()
    (data / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    (data / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip either")
    r = run("build", "mnist", "--data", str(data), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "train-" in r.stderr and "Traceback" not in r.stderr


def test_ctrl_c_mid_training_then_resume(tmp_path):
    # A teacher slow enough (~0.3 s/epoch) that SIGINT lands mid-training, after a checkpoint.
    recipe = write_recipe(tmp_path, teacher={"model": "teacher_cnn", "params": {"width": 48},
                                             "train": {"epochs": 40, "batch_size": 32, "lr": 0.003}})
    out = tmp_path / "run"
    proc = subprocess.Popen([*EDGEC, "build", str(recipe), "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob("teacher-*.work/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not [p for p in out.glob("teacher-*") if not p.name.endswith(".work")]  # nothing looks finished
    assert list(out.glob("teacher-*.work/checkpoint.pt"))

    r = subprocess.run([*EDGEC, "build", str(recipe), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (teacher,) = [p for p in out.glob("teacher-*") if not p.name.endswith(".work")]
    training = json.loads((teacher / "manifest.json").read_text())["metrics"]["training"]
    assert training["resumed_from_epoch"] is not None and training["resumed_from_epoch"] >= 1
    assert len(training["history"]) == 40  # the resumed run completed every epoch, none twice


def test_two_builds_in_separate_processes_are_identical(tmp_path):
    # Seeds must cover model construction too: a model's initial weights may not depend on the
    # process (this once made CI's gate see a teacher 1.7 points off its baseline).
    recipe = write_recipe(tmp_path, bench={"enabled": False}, quantize={"enabled": False})
    digests = []
    for out in ("a", "b"):
        r = subprocess.run([*EDGEC, "build", str(recipe), "--out", str(tmp_path / out), "--quiet"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        manifests = sorted((tmp_path / out).glob("*/manifest.json"))
        digests.append({m.parent.name: json.loads(m.read_text())["files"] for m in manifests
                        if m.parent.name.split("-")[0] in ("teacher", "distill", "export")})
    assert digests[0] == digests[1] and len(digests[0]) == 3

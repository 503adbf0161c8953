"""``edgec gate --min-int8-layers / --max-fallback-layers`` on hand-made results files."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from edgec.bench.gate import GateConfig, compare_results, load_gate_config
from edgec.bench.results import SCHEMA
from edgec.cli import app
from edgec.errors import EdgecError

LAYERS = {"layers": 12, "detailed": True, "counted": 10, "int8": 8, "fp16": 0, "fp32": 2, "other": 0,
          "int8_fraction": 0.8, "fallback": ["/pool/GlobalAveragePool"], "fallback_count": 1}


def results(layers: dict | None, where: str = "runner") -> dict:
    model = {"file": "model.plan", "bytes": 2048, "params": 1000, "flops": 5000, "accuracy": 0.95,
             "runtime": "tensorrt", "runner": {"runtime": "tensorrt", "version": "10.3.0", "device": "cuda:0"},
             "latency": {}, "energy": {"skipped": "test"}}
    if layers is not None and where == "runner":
        model["runner"]["engine_layers"] = layers
    elif layers is not None:
        model["engine_layers"] = layers
    return {"schema": SCHEMA, "source": "test", "device": "cuda", "machine": {"device_kind": "cuda"},
            "settings": {}, "warnings": [], "models": {"student_tensorrt": model}}


def _status(report, metric):
    return next(c.status for c in report.checks if c.metric == metric)


def test_int8_share_and_fallback_count_gate():
    doc = results(LAYERS)
    ok = compare_results(doc, doc, GateConfig(min_int8_layers=0.8, max_fallback_layers=1))
    assert ok.passed and _status(ok, "INT8 layers") == "pass" and _status(ok, "INT8 fallback layers") == "pass"
    bad = compare_results(doc, doc, GateConfig(min_int8_layers=0.9, max_fallback_layers=0))
    assert not bad.passed
    assert _status(bad, "INT8 layers") == "FAIL" and _status(bad, "INT8 fallback layers") == "FAIL"
    assert "GlobalAveragePool" in bad.markdown()


def test_summary_at_model_level_is_read_too():
    doc = results(LAYERS, where="model")
    assert not compare_results(doc, doc, GateConfig(min_int8_layers=0.95)).passed


def test_not_asked_means_not_checked():
    doc = results(LAYERS)
    assert not any("INT8" in c.metric for c in compare_results(doc, doc, GateConfig()).checks)


def test_asked_but_no_engine_summary_is_bad_input():
    doc = results(None)
    with pytest.raises(EdgecError, match="no TensorRT engine layer summary"):
        compare_results(doc, doc, GateConfig(max_fallback_layers=0))


def test_summary_without_detail_fails():
    doc = results({"layers": 3, "detailed": False})
    report = compare_results(doc, doc, GateConfig(min_int8_layers=0.5))
    assert _status(report, "engine layers") == "FAIL"


def test_config_values_are_validated():
    assert load_gate_config(None, min_int8_layers="0.75").min_int8_layers == 0.75
    with pytest.raises(EdgecError, match="fraction"):
        GateConfig(min_int8_layers=75)
    with pytest.raises(EdgecError, match=">= 0"):
        GateConfig(max_fallback_layers=-1)


def test_cli_option_exit_codes(tmp_path):
    current, baseline = tmp_path / "cur.json", tmp_path / "base.json"
    doc = results(LAYERS)
    baseline.write_text(json.dumps(doc))
    worse = copy.deepcopy(doc)
    worse["models"]["student_tensorrt"]["runner"]["engine_layers"].update(int8=5, int8_fraction=0.5)
    current.write_text(json.dumps(worse))
    run = CliRunner().invoke(app, ["gate", str(current), "--baseline", str(baseline), "--min-int8-layers", "0.8"])
    assert run.exit_code == 1, run.output
    run = CliRunner().invoke(app, ["gate", str(baseline), "--baseline", str(baseline), "--min-int8-layers", "0.8",
                                   "--max-fallback-layers", "1"])
    assert run.exit_code == 0, run.output

"""The results file: schema version, validation of what the gate needs, build results, machines."""

from __future__ import annotations

import json

import pytest

from edgec.bench.results import (SCHEMA, build_results, iter_latency, load_results,
                                 machine_differences, new_results, validate_results, write_results)
from edgec.bench.timing import latency_stats
from edgec.errors import EdgecError


def one_model_doc() -> dict:
    doc = new_results("test", "cpu", {"batches": [1]})
    doc["models"]["m.onnx"] = {"latency": {"1": {"host": latency_stats([1.0, 2.0, 3.0]).to_dict()}}}
    return doc


def test_new_results_describes_the_machine():
    doc = new_results("edgec bench", "cpu", {"batches": [1, 8]})
    assert doc["schema"] == SCHEMA == "edgec.bench/1"
    assert doc["machine"]["device_kind"] == "cpu" and "torch" in doc["machine"]["packages"]
    assert doc["machine_fingerprint"]["device_kind"] == "cpu" and doc["models"] == {}


def test_write_then_load_round_trip(tmp_path):
    path = write_results(tmp_path / "sub" / "r.json", one_model_doc())
    doc = load_results(path)
    assert doc["models"]["m.onnx"]["latency"]["1"]["host"]["samples_ms"] == [1.0, 2.0, 3.0]
    assert '"samples_ms": [1.0,2.0,3.0]' in path.read_text()  # one line per sample list
    assert not list(path.parent.glob(".tmp-*"))  # written atomically, nothing left behind


def test_missing_file(tmp_path):
    with pytest.raises(EdgecError, match="results file not found") as err:
        load_results(tmp_path / "nope.json")
    assert "edgec bench" in err.value.hint


def test_malformed_json(tmp_path):
    p = tmp_path / "r.json"
    p.write_text('{"schema": "edgec.bench/1", "models": {')
    with pytest.raises(EdgecError, match="not valid JSON"):
        load_results(p)


@pytest.mark.parametrize("schema", ["edgec.bench/2", "edgec.bench/0", "something/1"])
def test_wrong_schema_version(tmp_path, schema):
    doc = one_model_doc()
    doc["schema"] = schema
    with pytest.raises(EdgecError, match=f"has results schema '{schema}'; this edgec reads"):
        validate_results(doc, "r.json")


def test_not_a_results_file():
    with pytest.raises(EdgecError, match="no 'schema' field"):
        validate_results([1, 2, 3], "r.json")
    with pytest.raises(EdgecError, match="has no models"):
        validate_results({"schema": SCHEMA, "models": {}}, "r.json")


def test_empty_sample_list(tmp_path):
    doc = one_model_doc()
    doc["models"]["m.onnx"]["latency"]["1"]["host"]["samples_ms"] = []
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(EdgecError, match="empty or missing sample list") as err:
        load_results(p)
    assert "m.onnx batch 1 host" in err.value.message


def test_non_finite_samples():
    doc = one_model_doc()
    doc["models"]["m.onnx"]["latency"]["1"]["host"]["samples_ms"] = [1.0, -1.0]
    with pytest.raises(EdgecError, match="finite numbers"):
        validate_results(doc)


def test_iter_latency_orders_batches_numerically():
    model = {"latency": {"32": {"host": {}}, "8": {"host": {}, "device": {}}, "1": {"host": {}}}}
    assert [(b, k) for b, k, _ in iter_latency(model)] == [
        ("1", "host"), ("8", "device"), ("8", "host"), ("32", "host")]


def test_build_results_merges_report_and_bench():
    report = {"recipe": {"name": "tiny"}, "models": {"student_int8": {
        "file": "x/model.int8.onnx", "bytes": 10, "params": 5, "flops": 7, "accuracy": 0.9,
        "runtime": "onnxruntime"}}}
    bench = {"device": "cpu", "machine": {"device_kind": "cpu"}, "machine_fingerprint": {"a": 1},
             "settings": {"min_runs": 5}, "warnings": ["w"],
             "models": {"student_int8": {"latency": one_model_doc()["models"]["m.onnx"]["latency"],
                                         "params": "ignored: the report wins"}}}
    doc = build_results(report, bench)
    m = doc["models"]["student_int8"]
    assert doc["schema"] == SCHEMA and doc["source"] == "edgec build" and doc["recipe"] == "tiny"
    assert (m["params"], m["flops"], m["bytes"], m["accuracy"]) == (5, 7, 10, 0.9)
    assert m["latency"]["1"]["host"]["count"] == 3 and doc["warnings"][0] == "w"
    assert "student_int8 batch 1 (host): coefficient of variation 40.8%" in doc["warnings"][1]
    validate_results(doc)
    no_bench = build_results(report, None)
    assert "latency" not in no_bench["models"]["student_int8"]
    validate_results(no_bench)


def test_machine_differences_lists_each_difference():
    a = {"device": "cpu", "machine": {"device_kind": "cpu", "torch": "2.13"},
         "models": {"m": {"runner": {"runtime": "onnxruntime", "intra_op_threads": 1}}}}
    b = {"device": "cpu", "machine": {"device_kind": "cpu", "torch": "2.12"},
         "models": {"m": {"runner": {"runtime": "onnxruntime", "intra_op_threads": 2}}}}
    assert machine_differences(a, a) == []
    diffs = machine_differences(a, b)
    assert any("torch" in d and "'2.13' vs '2.12'" in d for d in diffs)
    assert "m: runner intra_op_threads: 1 vs 2" in diffs

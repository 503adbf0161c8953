"""`edgec bench` as a library: a tiny ONNX model, batch sweeps, inputs, energy with a fake meter,
and the CUDA-event clock (GPU only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgec.bench.results import load_results
from edgec.bench.run import (BenchConfig, Timing, bench_model, make_feeds, pick_energy_meter,
                             resolve_inputs, run_bench, runner_options)
from edgec.errors import EdgecError, ModelError
from edgec.runtimes import open_runner

# The TorchScript exporter (dynamo=False) is deprecated in torch 2.13 but fast and dependency-free.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FAST = Timing(warmup_runs=2, warmup_s=0.0, min_runs=20, min_duration_s=0.02, energy_idle_s=0.0,
              energy_min_s=0.1)


class Tiny(nn.Module):
    """Conv -> ReLU -> global mean -> linear: runs on any H, W (for the dynamic-shape export)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def export(path: Path, dynamic: dict | None, shape=(1, 1, 8, 8)) -> Path:
    torch.manual_seed(0)
    model = Tiny().eval()
    torch.onnx.export(model, (torch.randn(*shape),), str(path), dynamo=False, input_names=["input"],
                      output_names=["logits"], dynamic_axes=dynamic)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {
        "dynamic_batch": export(d / "tiny.onnx", {"input": {0: "batch"}, "logits": {0: "batch"}}),
        "fixed_batch": export(d / "fixed.onnx", None),
        "dynamic_hw": export(d / "hw.onnx", {"input": {0: "batch", 2: "h", 3: "w"}}),
    }


def test_bench_writes_results_with_raw_samples_for_each_batch(models, tmp_path):
    out = tmp_path / "r.json"
    doc = run_bench(BenchConfig(models["dynamic_batch"], batches=(1, 4), timing=FAST, energy="off",
                                threads=1, json_out=out))
    saved = load_results(out)  # validates schema and samples
    assert saved == json.loads(json.dumps(doc))
    m = saved["models"]["tiny.onnx"]
    assert list(m["latency"]) == ["1", "4"] and saved["settings"]["batches"] == [1, 4]
    for batch in ("1", "4"):
        host = m["latency"][batch]["host"]
        assert host["batch_size"] == int(batch) and host["count"] >= 20
        assert len(host["samples_ms"]) == host["count"] and min(host["samples_ms"]) > 0
        assert host["min"] <= host["p50"] <= host["p90"] <= host["p95"] <= host["p99"] <= host["max"]
    assert m["runner"]["providers"] == ["CPUExecutionProvider"] and m["runner"]["intra_op_threads"] == 1
    assert m["inputs"] == [{"name": "input", "shape": [1, 8, 8], "dtype": "float32", "source": "model"}]
    assert m["bytes"] == models["dynamic_batch"].stat().st_size
    assert m["cold_start"]["load_ms"] > 0 and m["energy"] == {"skipped": "energy measurement is off (--energy off)"}
    assert saved["machine"]["device_kind"] == "cpu" and saved["device"] == "cpu"


def test_input_shape_from_deploy_json_shape_flag_or_error(models, tmp_path):
    with open_runner(models["dynamic_hw"]) as runner:
        with pytest.raises(ModelError, match="cannot tell the input shape") as err:
            resolve_inputs(runner, models["dynamic_hw"])
        assert "--shape" in err.value.hint
        assert resolve_inputs(runner, models["dynamic_hw"], shape=(1, 6, 6))[0]["shape"] == [1, 6, 6]
        deploy = tmp_path / "deploy.json"
        deploy.write_text(json.dumps({"input": {"name": "input", "shape": ["batch", 1, 5, 5]}}))
        plan = resolve_inputs(runner, models["dynamic_hw"], deploy=deploy)[0]
        assert plan["shape"] == [1, 5, 5] and plan["source"] == str(deploy)
    with open_runner(models["dynamic_batch"]) as runner:
        with pytest.raises(ModelError, match=r"takes samples of shape \[1, 8, 8\]"):
            resolve_inputs(runner, models["dynamic_batch"], shape=(3, 8, 8))


def test_deploy_json_beside_the_model_is_found(models, tmp_path):
    folder = tmp_path / "run" / "deploy"
    folder.mkdir(parents=True)
    model = folder / "model.onnx"
    model.write_bytes(models["dynamic_hw"].read_bytes())
    (folder / "deploy.json").write_text(json.dumps({"input": {"shape": ["batch", 1, 4, 4]}}))
    doc = run_bench(BenchConfig(model, timing=FAST, energy="off"))
    assert doc["models"]["model.onnx"]["inputs"][0]["source"].endswith("deploy.json")


def test_fixed_batch_model_rejects_other_batch_sizes(models):
    with pytest.raises(ModelError, match="batch dimension is fixed at 1"):
        run_bench(BenchConfig(models["fixed_batch"], batches=(1, 8), timing=FAST, energy="off"))


@pytest.mark.parametrize("name", ["model.pt", "weights.pth"])
def test_pickle_files_are_refused_with_an_explanation(tmp_path, name):
    path = tmp_path / name
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(ModelError, match="pickle") as err:
        run_bench(BenchConfig(path))
    assert "without the architecture" in err.value.message and ".safetensors" in err.value.hint


def test_bad_files_and_settings(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        run_bench(BenchConfig(tmp_path / "missing.onnx"))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ModelError, match="cannot load"):
        run_bench(BenchConfig(corrupt, energy="off"))
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"not yet runnable")
    with pytest.raises(EdgecError, match="tensorrt|TensorRT engines"):  # a clear error, not a crash
        run_bench(BenchConfig(engine, energy="off"))
    with pytest.raises(EdgecError, match="unknown device"):
        run_bench(BenchConfig(corrupt, device="tpu"))
    with pytest.raises(EdgecError, match="batch sizes"):
        run_bench(BenchConfig(corrupt, batches=(0,)))
    from edgec.machine import is_jetson

    if not is_jetson():
        with pytest.raises(EdgecError, match="not a Jetson"):
            run_bench(BenchConfig(corrupt, device="jetson"))


def test_safetensors_model_runs_with_torch(tmp_path):
    from edgec.models import ModelSpec, save_model

    spec = ModelSpec("teacher_cnn", {}, in_channels=1, num_classes=10, input_size=8)
    path = save_model(spec.build(), spec, tmp_path / "t.safetensors")
    before = torch.get_num_threads()
    try:  # one thread: fast on a busy 2-core machine; torch.set_num_threads is process-wide
        doc = run_bench(BenchConfig(path, batches=(2,), timing=FAST, energy="off", threads=1))
    finally:
        torch.set_num_threads(before)
    m = doc["models"]["t.safetensors"]
    assert m["runtime"] == "torch" and m["inputs"][0]["shape"] == [1, 8, 8]
    assert m["runner"]["threads"] == 1
    assert m["latency"]["2"]["host"]["batch_size"] == 2


def test_random_inputs_are_realistic_never_zeros():
    plans = [{"name": "x", "shape": [3, 4], "dtype": "float32"},
             {"name": "ids", "shape": [5], "dtype": "int64"}]
    feeds = make_feeds(plans, 8, np.random.default_rng(0))
    x, ids = feeds["x"], feeds["ids"]
    assert x.shape == (8, 3, 4) and x.dtype == np.float32 and np.count_nonzero(x) == x.size
    assert abs(float(x.mean())) < 0.5 and 0.5 < float(x.std()) < 1.5
    assert ids.dtype == np.int64 and ids.min() >= 1 and ids.max() < 100


def test_runner_options_per_device():
    assert runner_options(Path("m.onnx"), "auto", "cpu", 2) == (
        "onnxruntime", {"providers": ["cpu"], "intra_op_threads": 2})
    runtime, opts = runner_options(Path("m.onnx"), "auto", "cuda", None)
    assert opts["providers"] == ["cuda", "cpu"]

    class FakeStream:
        cuda_stream = 1234

    _, opts = runner_options(Path("m.onnx"), "auto", "jetson", None, stream=FakeStream())
    assert opts["providers"] == [("CUDAExecutionProvider", {"user_compute_stream": "1234"}), "cpu"]
    _, opts = runner_options(Path("m.onnx"), "auto", "cuda", None, providers=["tensorrt", "cuda"])
    assert opts["providers"] == ["tensorrt", "cuda"]
    assert runner_options(Path("m.safetensors"), "auto", "cuda", 1) == (
        "torch", {"device": "cuda", "threads": 1})


def test_energy_off_and_energy_with_a_fake_meter(models):
    from edgec.bench.meters import PowerMeter

    assert pick_energy_meter("off", "cpu", 1.0)[0] is None

    class FiveWatts(PowerMeter):
        name = "fake"

        def available(self):
            return True, ""

        def read_power_w(self):
            return 5.0

    path = models["dynamic_batch"]
    entry = bench_model(lambda: open_runner(path, providers=["cpu"]),
                        lambda b: np.ones((b, 1, 8, 8), np.float32), [1, 2], FAST, meter=FiveWatts(),
                        idle_power_w=4.0)
    energy = entry["energy"]
    assert energy["meter"] == "fake" and set(energy["batches"]) == {"1", "2"}
    r = energy["batches"]["2"]
    assert r["avg_power_w"] == pytest.approx(5.0) and r["duration_s"] >= 0.1
    assert r["joules_per_inference"] == pytest.approx(5.0 * r["duration_s"] / r["inferences"])
    assert r["joules_per_inference_above_idle"] == pytest.approx(r["joules_per_inference"] / 5)
    assert r["inferences"] % 2 == 0 and len(r["trace"]) >= 3

    class Broken(FiveWatts):
        name = "broken"

        def read_power_w(self):
            return None  # neither power nor energy: the window cannot be integrated

    entry = bench_model(lambda: open_runner(path, providers=["cpu"]),
                        lambda b: np.ones((b, 1, 8, 8), np.float32), [1], FAST, meter=Broken())
    assert entry["energy"]["skipped"].startswith("energy measurement failed at batch 1")
    assert entry["latency"]["1"]["host"]["count"] >= 20  # the latency is kept


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU with a CUDA build of torch")


@pytest.mark.gpu
@needs_cuda
def test_cuda_event_clock_times_gpu_work_and_keeps_host_time():
    from edgec.bench.timing import CudaEventClock, measure_latency

    clock = CudaEventClock()
    a = torch.randn(2048, 2048, device="cuda")
    with torch.cuda.stream(clock.stream):
        stats = measure_latency(lambda: a @ a, warmup_runs=3, warmup_s=0, min_runs=20,
                                min_duration_s=0, clock=clock)
    assert stats.clock == "cuda events (device)" and stats.count == 20 and stats.min > 0
    assert len(clock.host_samples_ms) == 20
    # Host time includes the launch and the wait, so it is at least the device time (5 us slack).
    assert all(h + 0.005 >= d for h, d in zip(clock.host_samples_ms, stats.samples_ms))


@pytest.mark.gpu
@needs_cuda
def test_bench_torch_model_on_cuda_reports_device_and_host_clocks(tmp_path):
    from edgec.models import ModelSpec, save_model

    spec = ModelSpec("teacher_cnn", {}, in_channels=1, num_classes=10, input_size=8)
    path = save_model(spec.build(), spec, tmp_path / "t.safetensors")
    doc = run_bench(BenchConfig(path, device="cuda", batches=(1, 8), timing=FAST, energy="off"))
    m = doc["models"]["t.safetensors"]
    assert m["runner"]["device"].startswith("cuda")
    for batch in ("1", "8"):
        clocks = m["latency"][batch]
        assert set(clocks) == {"device", "host"} and clocks["device"]["clock"] == "cuda events (device)"
        assert clocks["device"]["count"] == clocks["host"]["count"]
        assert clocks["host"]["p50"] + 0.005 >= clocks["device"]["p50"] > 0


@pytest.mark.gpu
@needs_cuda
def test_bench_onnx_on_cuda_shares_the_timed_stream(models):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("ONNX Runtime has no CUDA provider here (needs onnxruntime-gpu)")
    doc = run_bench(BenchConfig(models["dynamic_batch"], device="cuda", timing=FAST, energy="off"))
    m = doc["models"]["tiny.onnx"]
    assert m["runner"]["providers"][0] == "CUDAExecutionProvider"
    assert set(m["latency"]["1"]) == {"device", "host"}


def test_cuda_event_clock_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from edgec.bench.timing import CudaEventClock

    with pytest.raises(EdgecError, match="CUDA event timing needs a CUDA GPU"):
        CudaEventClock()

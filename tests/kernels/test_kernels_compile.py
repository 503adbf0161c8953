"""Every kernel compiles with nvcc for the shipped archs with no local-memory spills; loader plumbing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgec.errors import MissingDependencyError
from edgec.kernels import loader

ARCHS = ("sm_87", "sm_86", "sm_90")
EXPECTED_ENTRIES = {
    "sparse_conv2d_csr": {"sparse_conv2d_csr_f32", "sparse_conv2d_csr_f16"},
    "lowbit_batched_gemv": {f"lbgemv_{t}_w{b}_m{m}" for t in ("f32", "f16") for b in (8, 4, 2, 1) for m in (1, 2, 4, 8)}
    - {"lbgemv_f16_w2_m8", "lbgemv_f32_w1_m8"},
    "lowbit_mma_gemm": {"lbmma_f16_w8", "lbmma_f16_w4", "lbmma_f16_w2"},
    "int8_gemm_dp4a": {"int8_gemm_dp4a", "quantize_int8_f32"},
}

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) is not installed")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc (CUDA toolkit) is not installed")
    return loader.check_all(ARCHS)


def test_every_entry_compiles_for_every_arch(rows):
    for name, entries in EXPECTED_ENTRIES.items():
        for arch in ARCHS:
            found = {r["kernel"] for r in rows if r["file"] == f"{name}.cu" and r["arch"] == arch}
            assert found == entries, (name, arch)


def test_no_local_memory_spills(rows):
    bad = [r for r in rows if r["spills"] or r["stack"] or not r["ok"]]
    assert not bad, bad


def test_resource_report_is_plausible(rows):
    for r in rows:
        # __launch_bounds__(128, 4) caps at 128 registers; the batched GEMV's wider entries (fp32 x or
        # MB >= 4 rows of x: more accumulators) ask for 2 blocks of 128 threads per SM, i.e. <= 255
        wide = r["kernel"].startswith("lbgemv_") and not re.match(r"lbgemv_f16_(w\d_m1|w[248]_m2)$", r["kernel"])
        assert 8 <= r["registers"] <= (255 if wide else 128), r
    smem = {r["kernel"]: r["smem"] for r in rows if r["arch"] == "sm_87"}
    assert smem["sparse_conv2d_csr_f32"] == 4 * 128 * 4   # s_val, s_off, s_dr, s_ds
    assert smem["int8_gemm_dp4a"] == 2 * 32 * 17 * 4      # As, Bs with one pad word per row
    assert smem["lbgemv_f16_w4_m1"] == 4 * 4 * 1 * 4   # red[warps][LBG_R][MB] floats
    assert smem["lbgemv_f32_w4_m8"] == 4 * 4 * 8 * 4


def test_parse_ptxas_report():
    text = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'k1' for 'sm_87'
ptxas info    : Function properties for k1
    8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 64 registers, used 1 barriers, 2048 bytes smem, 456 bytes cmem[0]
ptxas info    : Compiling entry function 'k2' for 'sm_87'
ptxas info    : Function properties for k2
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 20 registers, used 0 barriers, 384 bytes cmem[0]
"""
    rep = loader.parse_ptxas_report(text)
    assert rep["k1"] == {"registers": 64, "spill_stores": 12, "spill_loads": 16, "stack": 8, "smem": 2048}
    assert rep["k2"] == {"registers": 20, "spill_stores": 0, "spill_loads": 0, "stack": 0, "smem": 0}


@needs_nvcc
def test_compile_cubin_returns_an_elf_cubin(tmp_path):
    cubin, report = loader.compile_cubin(loader.kernel_source("int8_gemm_dp4a"), "sm_87")
    assert cubin[:4] == b"\x7fELF" and set(report) == EXPECTED_ENTRIES["int8_gemm_dp4a"]
    bad = tmp_path / "bad.cu"
    bad.write_text('extern "C" __global__ void k() { undeclared(); }\n')
    with pytest.raises(loader.KernelError, match="nvcc failed"):
        loader.compile_cubin(bad, "sm_87")
    with pytest.raises(loader.KernelError, match="bad CUDA arch"):
        loader.compile_cubin(bad, "87")


@needs_nvcc
def test_cubin_cache_key_and_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEC_KERNEL_CACHE", str(tmp_path / "cache"))
    assert loader.cache_dir() == tmp_path / "cache"
    src = loader.kernel_source("int8_gemm_dp4a")
    key = loader.cache_key(src, "sm_87")
    assert key != loader.cache_key(src, "sm_90") and key != loader.cache_key(src, "sm_87", ("-O2",))
    cubin = loader.cubin_for("int8_gemm_dp4a", "sm_87")  # no pycuda here: compiled by nvcc directly
    cached = list((tmp_path / "cache").glob("int8_gemm_dp4a-sm_87-*.cubin"))
    assert len(cached) == 1 and cached[0].read_bytes() == cubin
    assert not list((tmp_path / "cache").glob(".tmp-*"))
    cached[0].write_bytes(b"sentinel")  # a second call is served from the cache
    assert loader.cubin_for("int8_gemm_dp4a", "sm_87") == b"sentinel"


def test_source_digest_covers_included_headers(tmp_path):
    (tmp_path / "a.cu").write_text('#include "h.cuh"\n')
    (tmp_path / "h.cuh").write_text("// v1\n")
    d1 = loader.source_digest(tmp_path / "a.cu")
    (tmp_path / "h.cuh").write_text("// v2\n")
    assert loader.source_digest(tmp_path / "a.cu") != d1


def test_unknown_kernel_and_missing_sources(monkeypatch, tmp_path):
    with pytest.raises(loader.KernelError, match="unknown kernel file"):
        loader.kernel_source("nope")
    monkeypatch.setenv("EDGEC_KERNEL_SRC", str(tmp_path))
    with pytest.raises(loader.KernelError, match="EDGEC_KERNEL_SRC"):
        loader.kernel_dir()


def test_missing_pycuda_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycuda", None)  # import pycuda -> ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(MissingDependencyError) as info:
        loader._pycuda()
    assert "pip install 'edgec[gpu]'" in str(info.value)


def test_import_is_light():
    code = ("import sys, edgec.kernels, edgec.kernels.loader, edgec.kernels.packing, edgec.kernels.ops\n"
            "edgec.kernels.check_all\n"
            "print(sorted(m for m in ('torch', 'pycuda', 'pycuda.driver') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent).stdout
    assert out.strip() == "[]"


def test_benchmark_without_a_gpu_says_so_and_writes_nothing(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the benchmark would really run")
    out = tmp_path / "k.json"
    proc = subprocess.run([sys.executable, str(Path(__file__).parents[2] / "benchmarks" / "kernels.py"),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "skipped" in proc.stdout and "no CUDA GPU" in proc.stdout
    assert not out.exists()

"""``edgec engine MODEL.onnx``: a verified, described TensorRT engine from any QDQ or float ONNX file.

Like ``trtexec --onnx=MODEL.onnx --saveEngine=...``, but with edgec's checks around the build:

1. TensorRT and a CUDA GPU are required first (a clear error, exit 2, says what to install);
2. :func:`edgec.backends.tensorrt.builder.build_engine` builds ``model.plan`` + ``engine.json`` exactly as the
   recipe path does (QDQ checker, timing cache, 2:4 sparsity, DLA, the inspector's layer summary);
3. the engine is run on seeded random inputs next to ONNX Runtime on the same ONNX file, and every
   output is compared (:func:`edgec.compare.compare`: ``|engine - ort| <= atol + rtol * |ort|``);
4. ``verify.json`` records the comparison; a disagreement is :class:`VerificationFailed` (exit 1).

Example:
    >>> result = engine_from_onnx("model.int8.onnx", "model-engine/", BuildSettings(max_batch=8))
    >>> result["manifest"]["layers"]["int8"], result["verify"]["passed"]
    (4, True)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgec.atomic import atomic_write_json
from edgec.backends.open import open_runner
from edgec.backends.tensorrt.builder import BuildSettings, build_engine
from edgec.backends.tensorrt.probe import import_tensorrt
from edgec.compare import compare
from edgec.errors import ModelError, VerificationFailed

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "engine_from_onnx", "random_feeds", "compare_runners", "describe"]

# The recipe's verify.engine_atol / engine_rtol defaults (edgec.recipe.VerifySpec).
DEFAULT_ATOL, DEFAULT_RTOL = 0.5, 0.1


def random_feeds(inputs: list[Any], batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for ``inputs`` (runner :class:`~edgec.backends.runner.TensorSpec` list): standard normal
    floats, integers in [0, 10), booleans; the batch dimension (symbolic or unknown first dim) is ``batch``.

    Example:
        >>> random_feeds([TensorSpec("x", ("batch", 3), "float32")], batch=2)["x"].shape
        (2, 3)
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        shape = []
        for i, d in enumerate(spec.shape):
            if isinstance(d, int):
                shape.append(d)
            elif i == 0:
                shape.append(batch)
            else:
                raise ModelError(f"input '{spec.name}' has a dynamic dimension {i} ({d!r})",
                                 hint="edgec's engines allow a dynamic batch dimension only; export with fixed "
                                      "sample dimensions")
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, 10, size=shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise ModelError(f"input '{spec.name}' has dtype {spec.dtype}, which edgec cannot generate",
                             hint="verify this engine with your own data (engine_from_onnx(..., verify=False))")
    return feeds


def compare_runners(reference: Any, engine: Any, batch: int, *, rounds: int = 4, seed: int = 0,
                    atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> dict[str, Any]:
    """Run both runners on ``rounds`` seeded random batches; compare every output of ``engine`` with
    ``reference``'s. Returns ``{"passed", "batch", "rounds", "atol", "rtol", "outputs": {name: comparison}}``.

    Example:
        >>> compare_runners(ort_runner, trt_runner, batch=8)["passed"]      # doctest: +SKIP
        True
    """
    got: dict[str, list[np.ndarray]] = {}
    want: dict[str, list[np.ndarray]] = {}
    for r in range(rounds):
        feeds = random_feeds(reference.inputs, batch, seed + r)
        ref_out, eng_out = reference.run(feeds), engine.run(feeds)
        for name, value in ref_out.items():
            if name not in eng_out:
                raise VerificationFailed(f"the engine has no output '{name}' (it has {sorted(eng_out)})",
                                         hint="the engine and the ONNX file do not match; rebuild it")
            want.setdefault(name, []).append(value)
            got.setdefault(name, []).append(eng_out[name])
    outputs = {name: compare(np.concatenate(want[name]), np.concatenate(got[name]), atol=atol, rtol=rtol).to_dict()
               for name in want}
    passed = all(o["outside_tolerance"] == 0 for o in outputs.values())
    return {"passed": passed, "batch": batch, "rounds": rounds, "atol": atol, "rtol": rtol, "outputs": outputs}


def _verify_batch(manifest: dict[str, Any]) -> int:
    profiles = manifest.get("profile") or {}
    return min((p["opt"][0] for p in profiles.values()), default=1)


def engine_from_onnx(onnx_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None,
                     settings: BuildSettings | None = None, *, verify: bool = True, atol: float = DEFAULT_ATOL,
                     rtol: float = DEFAULT_RTOL, trt: Any = None, gpu: tuple[str, str] | None = None,
                     cache_dir: Path | None = None, engine_runner: Any = None) -> dict[str, Any]:
    """Build ``out_dir/model.plan`` (default: ``<onnx stem>-engine/`` beside the file) from any QDQ or float
    ONNX, verify it against ONNX Runtime and return ``{"plan", "manifest", "verify"}``.

    ``trt``/``gpu``/``cache_dir`` go to :func:`build_engine` (tests pass a stand-in); ``engine_runner``
    replaces the TensorRT runner of the built plan in the comparison (tests: no GPU). Raises
    :class:`MissingDependencyError` without TensorRT, :class:`VerificationFailed` when the engine
    disagrees with ONNX Runtime beyond ``atol + rtol * |reference|``.

    Example:
        >>> engine_from_onnx("resnet18.onnx", settings=BuildSettings(fp16=True, max_batch=16))["plan"]  # doctest: +SKIP
        PosixPath('resnet18-engine/model.plan')
    """
    src = Path(onnx_path)
    if not src.is_file():
        raise ModelError(f"ONNX file not found: {src}", hint="check the path")
    if src.suffix.lower() != ".onnx":
        raise ModelError(f"{src.name} is not an .onnx file", hint="edgec engine builds from ONNX models")
    trt = trt if trt is not None else import_tensorrt("edgec engine (building a TensorRT engine)")
    out = Path(out_dir) if out_dir is not None else src.with_name(f"{src.stem}-engine")
    built = build_engine(src, out, settings or BuildSettings(), trt=trt, gpu=gpu, cache_dir=cache_dir)
    result: dict[str, Any] = {"plan": built.plan, "manifest": built.manifest, "verify": None}
    if not verify:
        return result
    batch = _verify_batch(built.manifest)
    with open_runner(src, runtime="onnxruntime") as reference:
        if engine_runner is not None:
            report = compare_runners(reference, engine_runner, batch, atol=atol, rtol=rtol)
        else:
            with open_runner(built.plan, runtime="tensorrt") as engine:
                report = compare_runners(reference, engine, batch, atol=atol, rtol=rtol)
    report["reference"] = {"runtime": "onnxruntime", "file": src.name}
    atomic_write_json(out / "verify.json", report)
    result["verify"] = report
    if not report["passed"]:
        worst = max(report["outputs"].items(), key=lambda kv: kv[1]["outside_tolerance"])
        raise VerificationFailed(
            f"the engine disagrees with ONNX Runtime on {src.name}: {worst[1]['outside_tolerance']:.2%} of output "
            f"'{worst[0]}' is beyond atol {atol} + rtol {rtol} x |reference| (max |diff| "
            f"{worst[1]['max_abs_diff']:.3g}); details in {out / 'verify.json'}",
            hint="an INT8/FP16 engine may need a looser --atol/--rtol; otherwise look at the layers that fell "
                 "back (engine.json) or build without --fp16")
    return result


def describe(result: dict[str, Any]) -> list[str]:
    """Lines summarising a result of :func:`engine_from_onnx` for the terminal."""
    m = result["manifest"]
    layers = m.get("layers") or {}
    lines = [f"engine: {result['plan']} (TensorRT {m['tensorrt']}, {m['gpu']['name']} sm {m['gpu']['compute_capability']})"]
    if layers.get("detailed"):
        lines.append(f"layers: {layers['counted']} compute ({layers['int8']} INT8, {layers['fp16']} FP16, "
                     f"{layers['fp32']} FP32, {layers['other']} other); INT8 share {layers['int8_fraction']:.0%}; "
                     f"{layers['fallback_count']} fell back from INT8")
    if m.get("dla"):
        d = m["dla"]
        lines.append(f"DLA: core {d.get('core')}, {d.get('layers_on_dla')} layer(s) on DLA" if "core" in d
                     else f"DLA: not available ({d['available']} core(s)): built for the GPU")
    if result.get("verify"):
        v = result["verify"]
        worst = max(o["max_abs_diff"] for o in v["outputs"].values())
        lines.append(f"verify vs ONNX Runtime: {'passed' if v['passed'] else 'FAILED'} on {v['rounds']} x batch "
                     f"{v['batch']} random inputs (max |diff| {worst:.3g}, atol {v['atol']}, rtol {v['rtol']})")
    return lines


"""Engine-inspector JSON in TensorRT 11's form, hand-written for the inspector tests.

TensorRT 11's per-layer JSON lists ``Inputs``, ``Constants`` and ``Outputs`` (no ``Weights``/``Bias``),
tensors carry ``Datatype`` and ``Format``, and the engine's I/O is listed as ``I/O Tensors`` instead of
10.x's ``Bindings``. Myelin (TensorRT's graph compiler) adds bookkeeping layers (``shape_call``,
``signal``, ``wait``, ``signal_and_wait``) that run no math. A DLA engine shows the DLA subgraph as a
``{ForeignNode[...]}`` layer on DLA and copies into/out of DLA memory (``... to nvm``, ``... from nvm``,
``... copy finish``; names as trtexec's profile prints them).
"""

from __future__ import annotations


def _t(name: str, dtype: str, dims: list[int], fmt: str = "Row major linear") -> dict:
    return {"Name": name, "Location": "Device", "Dimensions": dims, "Datatype": dtype, "Format": fmt}


TRT11 = {"Layers": [
    {"Name": "__myelin_shape_call_0", "LayerType": "shape_call", "Inputs": [], "Outputs": []},
    {"Name": "input_quantize", "LayerType": "Reformat", "Inputs": [_t("input", "Float", [1, 1, 8, 8])],
     "Outputs": [_t("q", "Int8", [1, 1, 8, 8], "Channel major")]},
    # INT8 math, FP32 output (the DQ after it fused in): must count as INT8, not as an FP32 fallback
    {"Name": "/0/Conv + /1/Relu", "LayerType": "CaskConvolution", "Inputs": [_t("q", "Int8", [1, 1, 8, 8])],
     "Constants": [_t("/0/weight", "Int8", [8, 1, 3, 3]), _t("/0/bias", "Float", [8])],
     "Outputs": [_t("a", "Float", [1, 8, 8, 8])], "Metadata": "[ONNX Layer: /0/Conv]\u001f[ONNX Layer: /1/Relu]"},
    {"Name": "__myelin_signal_1", "LayerType": "signal", "Inputs": [], "Outputs": []},
    {"Name": "__myelin_wait_1", "LayerType": "wait", "Inputs": [], "Outputs": []},
    {"Name": "__myelin_signal_and_wait_2", "LayerType": "signal_and_wait", "Inputs": [], "Outputs": []},
    # a real FP32 fallback: float inputs and constants
    {"Name": "/2/Conv", "LayerType": "CaskConvolution", "Inputs": [_t("a", "Float", [1, 8, 8, 8])],
     "Constants": [_t("/2/weight", "Float", [8, 8, 3, 3])], "Outputs": [_t("b", "Float", [1, 8, 4, 4])],
     "Metadata": "[ONNX Layer: /2/Conv]"},
    # an image-style UInt8 input cast: uint8, not int8
    {"Name": "/cast/Cast", "LayerType": "Cast", "Inputs": [_t("pixels", "UInt8", [1, 1, 8, 8])],
     "Outputs": [_t("pixels_f", "UInt8", [1, 1, 8, 8])]},
    # Myelin GEMM: INT8 x INT8 -> FP32 logits
    {"Name": "{ForeignNode[/5/Gemm]}", "LayerType": "gemm", "Inputs": [_t("b_q", "Int8", [1, 128])],
     "Constants": [_t("/5/weight", "Int8", [10, 128])], "Outputs": [_t("logits", "Float", [1, 10])],
     "Metadata": "[ONNX Layer: /5/Gemm]"},
], "I/O Tensors": ["input", "logits"]}
TRT11_QUANTIZED = {"/0/Conv", "/2/Conv", "/5/Gemm"}

DLA_LAYERS = {"Layers": [
    {"Name": "input to nvm", "LayerType": "Reformat", "Inputs": [_t("input", "Float", [1, 1, 8, 8])],
     "Outputs": [_t("input_nvm", "Half", [1, 1, 8, 8], "Channel major FP16 format where C % 16 == 0")]},
    {"Name": "{ForeignNode[/0/Conv.../3/Relu]}", "LayerType": "DLA",
     "Inputs": [_t("input_nvm", "Half", [1, 1, 8, 8])], "Outputs": [_t("c_nvm", "Half", [1, 8, 4, 4])]},
    {"Name": "c from nvm", "LayerType": "Reformat", "Inputs": [_t("c_nvm", "Half", [1, 8, 4, 4])],
     "Outputs": [_t("c", "Half", [1, 8, 4, 4])]},
    {"Name": "input copy finish", "LayerType": "Reformat", "Inputs": [], "Outputs": []},
    {"Name": "/5/Gemm", "LayerType": "CaskGemm", "Inputs": [_t("c", "Half", [1, 128])],
     "Constants": [_t("/5/weight", "Half", [10, 128])], "Outputs": [_t("logits", "Half", [1, 10])]},
], "I/O Tensors": ["input", "logits"]}
GPU_ONLY_LAYERS = {"Layers": [DLA_LAYERS["Layers"][-1]], "I/O Tensors": ["input", "logits"]}

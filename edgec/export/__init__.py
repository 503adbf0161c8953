"""From a trained torch model to ONNX files that deployment runtimes accept.

``onnx.py`` exports FP32 ONNX (dynamo or TorchScript exporter), loads ONNX files safely, runs the
checker and compares ONNX Runtime against torch; ``qdq.py`` checks that a quantized (QDQ) file is
one TensorRT's parser accepts. The submodules are not imported here so that ``import
edgec.export`` stays cheap (``qdq`` needs only ``onnx``).
"""

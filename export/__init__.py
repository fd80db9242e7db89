"""Deployment: ONNX export (``seld-edge export``) and the TensorRT-compatibility check of its graph."""

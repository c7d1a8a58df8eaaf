"""trtci: regression tracking for TensorRT and ONNX Runtime inference engines."""

__version__ = "0.1.0"

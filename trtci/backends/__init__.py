"""Backends: what loads a prepared ONNX model (or builds an engine from it), runs it and times it.

`base` declares the interface every backend implements, `registry` finds backends by name (trtci's own and
plugins', through one path), and each backend lives in its own module: `onnxruntime` (the embedded default, on
the CPU) and `tensorrt` (TensorRT and TensorRT for RTX). `measure`, `cuda_timing` and `telemetry` time sessions
the trtexec way; `doctor` says what each backend can do on this machine.

Backends import only trtci.config, trtci.results, trtci.context and trtci.errors; GPU packages are imported
lazily, when a backend is made.
"""

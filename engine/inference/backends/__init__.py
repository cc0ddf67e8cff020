"""Inference backends: PyTorch (CUDA, Apple MPS or the CPU) and compiled CPU runtimes (OpenVINO, ONNX Runtime).

On a CPU, `auto` hands the network to OpenVINO when it is installed (it comes with Cardinal), which computes in
bf16 where the CPU does natively; else to ONNX Runtime for fp32; else PyTorch runs it. The model is converted once
per model, runtime version and precision, in the background after the model has loaded, and cached on disk
(`store`); a conversion is used only after it gives PyTorch's answers (`convert`'s parity gate). A cached
conversion opens without loading PyTorch at all (`select.fast_classifier`). On CUDA and MPS PyTorch stays the
backend. Modules here import torch only where they convert: `runtimes`, `compiled`, `classifier`, `store`,
`pixels` and `select` are torch-free.
"""

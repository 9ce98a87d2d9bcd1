"""Export tensor products to other runtimes: ONNX models that run in stock onnxruntime,
onnxruntime custom-op libraries that run the compiled kernel in their place, and ONNX
models of PyTorch modules that use ``tpc.torch.TensorProduct``."""

from tpc.export.onnx import export_onnx, tensor_product_function
from tpc.export.ort_library import build_ort_library


def __getattr__(name: str):
    """``export_torch_onnx`` is imported on first use: it needs torch and onnxscript."""
    if name == "export_torch_onnx":
        from tpc.export.torch_onnx import export_torch_onnx

        return export_torch_onnx
    raise AttributeError(f"module 'tpc.export' has no attribute {name!r}")


__all__ = ["build_ort_library", "export_onnx", "export_torch_onnx", "tensor_product_function"]

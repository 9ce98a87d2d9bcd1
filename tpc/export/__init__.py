"""Export tensor products to other runtimes: ONNX models that run in stock onnxruntime, and
onnxruntime custom-op libraries that run the compiled kernel in their place."""

from tpc.export.onnx import export_onnx
from tpc.export.ort_library import build_ort_library

__all__ = ["build_ort_library", "export_onnx"]

"""Export tensor products to other runtimes: ONNX models that run in stock onnxruntime."""

from tpc.export.onnx import export_onnx

__all__ = ["export_onnx"]

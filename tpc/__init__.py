"""tpc: an autotuning compiler for the tensor products of equivariant neural networks."""

from tpc import presets, so3, verify
from tpc._version import __version__
from tpc.contraction_kernel import ContractionKernel
from tpc.irreps import Irrep, Irreps
from tpc.ops import (
    ALGORITHMS,
    ChannelwiseTensorProduct,
    Contraction,
    ConvolutionGradient,
    FullyConnectedTensorProduct,
    Fused,
    GauntTensorProduct,
    Gradient,
    Instruction,
    Op,
    Product,
    SymmetricContraction,
    TensorProduct,
    algorithms_for,
    mace_convolution,
)
from tpc.runtime import ConvolutionGradientKernel, ConvolutionKernel, GradientKernel, Kernel, load
from tpc.targets import resolve_target


def __getattr__(name: str):
    """The compiler (``tpc.compile`` and its siblings, ``tpc.build``, ``tpc.lower``,
    ``tpc.schedule``), ``tpc.tune``, ``tpc.tune_graph``, the ONNX exporters and graphs are
    imported on first use, so loading kernels or compiled graphs never imports the compiler,
    the tuner, onnx or networkx."""
    if name in ("compile", "compile_convolution", "compile_gradient"):
        import tpc.build

        return getattr(tpc.build, name)
    if name in ("build", "lower", "schedule"):
        import importlib

        return importlib.import_module(f"tpc.{name}")
    if name == "tune":
        import tpc.tune

        return tpc.tune
    if name == "tune_graph":
        from tpc.tune import tune_graph

        return tune_graph
    if name in ("graph", "Graph"):
        import tpc.graph

        return tpc.graph if name == "graph" else tpc.graph.Graph
    if name in ("compile_graph", "load_graph"):
        import tpc.graph

        return getattr(tpc.graph, name)
    if name in ("export_onnx", "export_torch_onnx", "build_ort_library"):
        import tpc.export

        return getattr(tpc.export, name)
    raise AttributeError(f"module 'tpc' has no attribute {name!r}")

__all__ = [
    "ALGORITHMS",
    "ChannelwiseTensorProduct",
    "ConvolutionKernel",
    "FullyConnectedTensorProduct",
    "Fused",
    "ConvolutionGradient",
    "ConvolutionGradientKernel",
    "ContractionKernel",
    "Contraction",
    "GauntTensorProduct",
    "Gradient",
    "Graph",
    "Instruction",
    "Irrep",
    "Irreps",
    "GradientKernel",
    "Kernel",
    "Op",
    "Product",
    "SymmetricContraction",
    "TensorProduct",
    "__version__",
    "algorithms_for",
    "build_ort_library",
    "compile",
    "compile_convolution",
    "compile_graph",
    "compile_gradient",
    "export_onnx",
    "export_torch_onnx",
    "graph",
    "load",
    "load_graph",
    "mace_convolution",
    "presets",
    "resolve_target",
    "so3",
    "tune",
    "tune_graph",
    "verify",
]

"""Tensor-product specifications and the ops computed from them: what to compute, independent of how."""

from tpc.ops.constructors import (
    ChannelwiseTensorProduct,
    FullyConnectedTensorProduct,
    GauntTensorProduct,
    mace_convolution,
    mace_product,
)
from tpc.ops.gaunt_form import gaunt_form_problem
from tpc.ops.op import (
    ALGORITHMS,
    CONTRACTION_KEYS,
    FUSIONS,
    GRID_FROM_DEGREE,
    JOINT_GRADIENTS,
    Contraction,
    ConvolutionGradient,
    Fused,
    Gradient,
    Op,
    OpLike,
    Product,
    ProductOp,
    algorithms_for,
    as_op,
    make_op,
    op_from_dict,
)
from tpc.ops.symmetric_contraction import SymmetricContraction
from tpc.ops.tensor_product import MODES, WRT, Instruction, TensorProduct

__all__ = [
    "ALGORITHMS",
    "Contraction",
    "ConvolutionGradient",
    "FUSIONS",
    "JOINT_GRADIENTS",
    "CONTRACTION_KEYS",
    "GRID_FROM_DEGREE",
    "MODES",
    "WRT",
    "ChannelwiseTensorProduct",
    "FullyConnectedTensorProduct",
    "Fused",
    "GauntTensorProduct",
    "Gradient",
    "Instruction",
    "Op",
    "OpLike",
    "Product",
    "ProductOp",
    "SymmetricContraction",
    "TensorProduct",
    "algorithms_for",
    "as_op",
    "gaunt_form_problem",
    "mace_convolution",
    "mace_product",
    "make_op",
    "op_from_dict",
]

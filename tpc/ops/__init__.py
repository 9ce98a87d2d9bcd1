"""Tensor-product specifications: what to compute, independent of how."""

from tpc.ops.constructors import ChannelwiseTensorProduct, FullyConnectedTensorProduct, GauntTensorProduct
from tpc.ops.tensor_product import MODES, WRT, Instruction, TensorProduct, check_wrt, op_fingerprint

__all__ = [
    "MODES",
    "ChannelwiseTensorProduct",
    "FullyConnectedTensorProduct",
    "GauntTensorProduct",
    "Instruction",
    "TensorProduct",
    "WRT",
    "check_wrt",
    "op_fingerprint",
]

"""Tensor-product specifications: what to compute, independent of how."""

from tpc.ops.constructors import ChannelwiseTensorProduct, FullyConnectedTensorProduct, GauntTensorProduct
from tpc.ops.tensor_product import (FUSIONS, MODES, WRT, Instruction, TensorProduct, check_fusion, check_wrt,
                                    fusion_parts, op_fingerprint)

__all__ = [
    "FUSIONS",
    "MODES",
    "ChannelwiseTensorProduct",
    "FullyConnectedTensorProduct",
    "GauntTensorProduct",
    "Instruction",
    "TensorProduct",
    "WRT",
    "check_fusion",
    "check_wrt",
    "fusion_parts",
    "op_fingerprint",
]

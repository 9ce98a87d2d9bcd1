"""tpc: an autotuning compiler for the tensor products of equivariant neural networks."""

from tpc import presets, so3
from tpc.irreps import Irrep, Irreps
from tpc.ops import (
    ChannelwiseTensorProduct,
    FullyConnectedTensorProduct,
    GauntTensorProduct,
    Instruction,
    TensorProduct,
)

__version__ = "0.1.0"

__all__ = [
    "ChannelwiseTensorProduct",
    "FullyConnectedTensorProduct",
    "GauntTensorProduct",
    "Instruction",
    "Irrep",
    "Irreps",
    "TensorProduct",
    "__version__",
    "presets",
    "so3",
]

"""PyTorch: tensor products (:class:`TensorProduct`), message-passing convolutions
(:class:`Convolution`) and MACE's product basis (:class:`SymmetricContraction`) as
``torch.nn.Module``s on compiled kernels, and :func:`convert`, which puts them into existing
e3nn and MACE models.

Importing ``tpc.torch`` registers the ``tpc::`` custom ops, so saved, scripted and exported
models that call them load after ``import tpc.torch``.
"""

from tpc.torch.contraction import SymmetricContraction
from tpc.torch.convert import Conversion, ConversionReport, convert
from tpc.torch.convolution import Convolution, convolution, convolution_gradients
from tpc.torch.modules import TensorProduct
from tpc.torch.ops import (
    TORCH_DTYPES,
    KernelCall,
    record_calls,
    registered_product,
    tensor_product,
    tensor_product_gradient,
    tensor_product_gradients,
)

__all__ = [
    "TORCH_DTYPES",
    "Conversion",
    "ConversionReport",
    "Convolution",
    "KernelCall",
    "SymmetricContraction",
    "TensorProduct",
    "convert",
    "convolution",
    "convolution_gradients",
    "record_calls",
    "registered_product",
    "tensor_product",
    "tensor_product_gradient",
    "tensor_product_gradients",
]

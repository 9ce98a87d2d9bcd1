"""``convert``: an existing PyTorch model with its e3nn tensor products computed by tpc.

Every ``e3nn.o3.TensorProduct`` (any subclass, e3nn 0.4 to 0.6) whose spec tpc computes is
replaced by a :class:`tpc.torch.TensorProduct` with the same spec, the same weights and the
same state_dict entries, so the original model's checkpoints load strictly into the converted
one and back. Modules it cannot compute stay, and the report says why.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tpc.ops import SymmetricContraction as SymmetricContractionSpec
from tpc.ops import TensorProduct as TensorProductSpec
from tpc.ops.symmetric_contraction import BASES
from tpc.targets import resolve_target
from tpc.torch.contraction import SymmetricContraction
from tpc.torch.convolution import Convolution
from tpc.torch.modules import TensorProduct

PRODUCT_BASIS = "SymmetricContraction"
"""The class name of mace-torch's product basis, which convert replaces by
:class:`tpc.torch.SymmetricContraction` where it can."""


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert` did with one module: ``path`` in the model, the module's class,
    whether it was ``converted``, and why (the spec it computes, or why it stayed)."""

    path: str
    kind: str
    converted: bool
    reason: str


class ConversionReport(tuple):
    """The :class:`Conversion` of every module convert looked at, in model order."""

    @property
    def converted(self) -> list[Conversion]:
        return [entry for entry in self if entry.converted]

    @property
    def left(self) -> list[Conversion]:
        return [entry for entry in self if not entry.converted]

    def table(self) -> str:
        """A plain-text table: module, class, converted or left, why."""
        rows = [("module", "class", "", "why")] + [
            (entry.path, entry.kind, "converted" if entry.converted else "left", entry.reason) for entry in self]
        widths = [max(len(row[column]) for row in rows) for column in range(3)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3] for row in rows]
        summary = f"{len(self.converted)} converted, {len(self.left)} left"
        return "\n".join(lines + [summary])


def convert(model: torch.nn.Module, *, target: Any = "host", inplace: bool = False, fuse: bool = True,
            verbose: bool = False) -> torch.nn.Module:
    """The model with every e3nn tensor product tpc can compute replaced by a compiled module.

    Internal (shared) weights are copied; products whose weights are passed in (per sample or
    shared) keep taking them. Each replacement keeps the state_dict entries of the module it
    replaces (e3nn's ``weight``, ``output_mask`` and coupling buffers), so the original model's
    state_dict loads strictly. The report is ``model.tpc_conversion``.

    With ``fuse``, the ``conv_tp`` of a block that offers MACE's ``conv_fusion`` call (mace's
    interaction blocks: ``conv_tp(node_feats, edge_attrs, weights, edge_index)`` returning
    per-node messages) becomes a :class:`tpc.torch.Convolution`: the block's gather, product
    and scatter-sum run as one compiled op, forward and backward.

    Args:
        model: any ``torch.nn.Module`` (e3nn models, mace-torch models, ...).
        target: a CPU target for the kernels (``"host"`` by default).
        inplace: replace the modules in ``model`` itself instead of in a copy.
        fuse: fuse convolutions with their gather and scatter-sum where the model allows it.
        verbose: print the report's table.

    Returns:
        The converted model (``model`` itself when ``inplace``).

    >>> import torch, tpc.torch
    >>> from e3nn import o3  # doctest: +SKIP
    >>> converted = tpc.torch.convert(torch.nn.Sequential(o3.FullyConnectedTensorProduct("1o", "1o", "0e")))
    ... # doctest: +SKIP
    >>> [entry.converted for entry in converted.tpc_conversion]  # doctest: +SKIP
    [True]
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"convert takes a torch.nn.Module, got {type(model).__name__}")
    resolved = resolve_target(target)
    if resolved.family != "cpu":
        raise ValueError(f"tpc.torch runs on CPU targets (x86, arm, host) so far, not {resolved.name!r}")
    entries, replacements, fused = [], {}, []
    for path, module in model.named_modules():
        if _is_e3nn_tensor_product(module):
            replacement, reason = _replacement(module, resolved)
            parent_path, _, name = path.rpartition(".")
            if fuse and replacement is not None and name == "conv_tp" and \
                    _offers_fused_convolution(model.get_submodule(parent_path)) and not replacement.shared_weights:
                replacement = Convolution(replacement.tp, resolved)
                _keep_state_entries(replacement, module)
                reason += "; fused with its gather and scatter-sum"
                fused.append(parent_path)
            entries.append(Conversion(path or "(model)", type(module).__name__, replacement is not None, reason))
            if replacement is not None:
                replacements[path] = (module, replacement)
        elif type(module).__name__ == PRODUCT_BASIS and type(module).__module__.startswith("mace."):
            replacement, reason = _contraction_replacement(module, resolved)
            entries.append(Conversion(path, type(module).__name__, replacement is not None, reason))
            if replacement is not None:
                replacements[path] = (module, replacement)
    if "" in replacements:
        converted = replacements[""][1]
    elif inplace:
        converted = model
    else:
        converted = _copy_without(model, [module for module, _ in replacements.values()])
    for path, (_, replacement) in replacements.items():
        if path:
            parent_path, _, name = path.rpartition(".")
            converted.get_submodule(parent_path)._modules[name] = replacement
    for path in fused:
        converted.get_submodule(path).conv_fusion = "tpc"
    report = ConversionReport(entries)
    object.__setattr__(converted, "tpc_conversion", report)
    if verbose:
        print(report.table())
    return converted


def _offers_fused_convolution(block: torch.nn.Module) -> bool:
    """Whether ``block.forward`` calls ``conv_tp`` fused when the block has ``conv_fusion`` (mace)."""
    code = getattr(type(block).forward, "__code__", None)
    return code is not None and "conv_fusion" in code.co_consts


def _is_e3nn_tensor_product(module: torch.nn.Module) -> bool:
    return any(cls.__name__ == "TensorProduct" and cls.__module__.startswith("e3nn.") for cls in type(module).__mro__)


def _replacement(module: torch.nn.Module, target: Any) -> tuple[TensorProduct | None, str]:
    """The tpc module computing ``module``, or None and the reason it stays."""
    try:
        spec = TensorProductSpec.from_e3nn(module)
    except ValueError as error:
        return None, str(error)
    tensors = list(module.parameters()) + list(module.buffers())
    devices = {tensor.device.type for tensor in tensors}
    if devices - {"cpu"}:
        return None, f"on {', '.join(sorted(devices))}: tpc.torch runs on CPU tensors so far"
    dtypes = {tensor.dtype for tensor in tensors if tensor.is_floating_point()}
    if len(dtypes) > 1 or not dtypes <= {torch.float32, torch.float64}:
        return None, f"tensors of dtypes {sorted(str(d) for d in dtypes)}: tpc.torch takes float32 or float64"
    dtype = dtypes.pop() if dtypes else torch.get_default_dtype()
    weight = getattr(module, "weight", None)
    internal = isinstance(weight, torch.nn.Parameter) and spec.weight_numel > 0
    replacement = TensorProduct(spec, target, internal_weights=internal).to(dtype)
    if internal:
        with torch.no_grad():
            replacement.weight.copy_(weight)
        replacement.weight.requires_grad_(weight.requires_grad)
    _keep_state_entries(replacement, module)
    replacement.train(module.training)
    sharing = "internal" if internal else "shared, passed in" if spec.shared_weights else "per sample, passed in"
    paths = len(spec.instructions)
    return replacement, (f"{spec.irreps_in1} x {spec.irreps_in2} -> {spec.irreps_out}, {paths} paths, "
                         f"weights {sharing}")


def _contraction_replacement(module: torch.nn.Module, target: Any) -> tuple[torch.nn.Module | None, str]:
    """The compiled product basis computing mace's ``module``, or None and the reason it stays."""
    contractions = list(module.contractions)
    correlations = {contraction.correlation for contraction in contractions}
    if len(correlations) != 1:
        return None, f"a correlation per output irrep ({sorted(correlations)}): tpc takes one"
    if not getattr(module, "internal_weights", True):
        return None, "weights passed in: tpc keeps them in the module"
    zeroed = [name for name, buffer in module.named_buffers() if name.endswith("_zeroed") and bool(buffer)]
    if zeroed:
        return None, f"paths without coupling ({', '.join(zeroed)}): not supported yet"
    try:
        spec = SymmetricContractionSpec(str(module.irreps_in), str(module.irreps_out), correlations.pop(),
                                        int(contractions[0].weights_max.shape[0]))
    except ValueError as error:
        return None, str(error)
    spec, why = _matching_basis(spec, contractions)
    if spec is None:
        return None, why
    tensors = list(module.parameters())
    if {tensor.device.type for tensor in tensors} - {"cpu"}:
        return None, "not on the CPU: tpc.torch runs on CPU tensors so far"
    dtypes = {tensor.dtype for tensor in tensors}
    if len(dtypes) != 1 or not dtypes <= {torch.float32, torch.float64}:
        return None, f"tensors of dtypes {sorted(str(d) for d in dtypes)}: tpc.torch takes float32 or float64"
    replacement = SymmetricContraction(spec, target).to(dtypes.pop())
    replacement.load_state_dict({name: value for name, value in module.state_dict().items()
                                 if name in dict(replacement.named_parameters())})
    for (name, theirs), ours in zip(module.named_parameters(), replacement.parameters()):
        ours.requires_grad_(theirs.requires_grad)
    _keep_state_entries(replacement, module)
    replacement.train(module.training)
    return replacement, (f"{spec.irreps_in} -> {spec.irreps_out}, correlation {spec.correlation}, "
                         f"{spec.num_elements} elements")


def _matching_basis(spec: SymmetricContractionSpec, contractions: list) -> tuple[Any, str]:
    """``spec`` in the coupling basis equal to mace's ``U_matrix`` buffers, or None and why none is."""
    for basis in BASES:
        candidate = dataclasses.replace(spec, basis=basis)
        try:
            differs = [f"{ir} at order {nu}" for contraction, (_, ir) in zip(contractions, spec.irreps_out)
                       for nu in range(1, spec.correlation + 1)
                       if not _equal(getattr(contraction, f"U_matrix_{nu}"), candidate.coupling(ir, nu))]
        except ImportError:
            return None, ("its coupling tensors differ from tpc's Wigner basis; mace's reduced basis needs "
                          "cuequivariance to compare with: pip install cuequivariance")
        if not differs:
            return candidate, ""
    return None, (f"its coupling tensors ({differs[0]}) equal neither of mace's bases as tpc computes them "
                  "(wigner, reduced)")


def _equal(theirs: torch.Tensor, ours: np.ndarray) -> bool:
    """Whether a module's coupling buffer is ``ours``, to the rounding of its dtype."""
    theirs = theirs.detach().cpu().double().numpy()
    return theirs.shape == ours.shape and abs(theirs - ours).max(initial=0.0) <= 1e-6 * max(abs(ours).max(), 1)


def _keep_state_entries(replacement: torch.nn.Module, module: torch.nn.Module) -> None:
    """Copy the buffers of ``module`` that ``replacement`` lacks under the same dotted names
    (persistent or not as they were), so state_dicts load both ways; the kernels do not read them."""
    owners = dict(module.named_modules())
    for name, buffer in module.named_buffers():
        owner_path, _, leaf = name.rpartition(".")
        target = replacement
        for part in owner_path.split(".") if owner_path else []:
            if part not in target._modules:
                target._modules[part] = torch.nn.Module()
            target = target._modules[part]
        if leaf in target._buffers or leaf in target._parameters:
            continue
        persistent = leaf not in getattr(owners[owner_path], "_non_persistent_buffers_set", ())
        target.register_buffer(leaf, buffer.detach().clone(), persistent=persistent)


def _copy_without(model: torch.nn.Module, replaced: list[torch.nn.Module]) -> torch.nn.Module:
    """A deep copy of ``model`` that does not copy the modules about to be replaced.

    Copying e3nn's generated code adds constants to its state (``_tensor_constantN``) that the
    original does not have; they are made non-persistent, so the original state_dict still loads.
    """
    memo: dict[int, Any] = {id(module): module for module in replaced}
    copied = copy.deepcopy(model, memo)
    original_keys = set(model.state_dict())
    for path, module in copied.named_modules():
        if any(module is r for r in replaced) or isinstance(module, torch.jit.ScriptModule):
            continue
        for name in list(module._buffers):
            key = f"{path}.{name}" if path else name
            if name not in module._non_persistent_buffers_set and key not in original_keys:
                module._non_persistent_buffers_set.add(name)
    return copied

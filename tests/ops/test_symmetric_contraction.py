"""tpc.SymmetricContraction against mace-torch's SymmetricContraction (float64): its coupling
tensors equal mace's buffers in both of mace's bases (cuequivariance installed, as the test
extra installs it), and its reference equals mace's module with the same weights."""

import itertools

import numpy as np
import pytest

import tpc
from tpc.verify import relative_error

CHANNELS = 3
IRREPS_IN = ["0e+1o+2e+3o", "0e+1o"]
IRREPS_OUT = ["0e", "0e+1o", "0e+1o+2e"]


def _with_channels(irreps: str) -> str:
    return "+".join(f"{CHANNELS}x{ir}" for ir in irreps.split("+"))


def _mace_module(spec: tpc.SymmetricContraction, use_reduced_cg: bool):
    """mace's module in float64."""
    import torch
    from e3nn import o3
    from mace.modules.symmetric_contraction import SymmetricContraction

    from tpc.testing import float64_torch

    with float64_torch():
        torch.manual_seed(0)
        return SymmetricContraction(o3.Irreps(str(spec.irreps_in)), o3.Irreps(str(spec.irreps_out)),
                                    spec.correlation, num_elements=spec.num_elements, use_reduced_cg=use_reduced_cg)


def _weights(module, spec: tpc.SymmetricContraction) -> list[list[np.ndarray]]:
    """mace's weights in the spec's order: per output irrep, orders 1..correlation."""
    weights = []
    for contraction in module.contractions:
        by_order = {spec.correlation: contraction.weights_max}
        by_order.update({spec.correlation - 1 - i: weight for i, weight in enumerate(contraction.weights)})
        weights.append([by_order[order].detach().numpy() for order in range(1, spec.correlation + 1)])
    return weights


# Every case in both of mace's bases, with 1 or 10 elements in turn.
CASES = [(*case, (1, 10)[index % 2], use_reduced_cg) for use_reduced_cg in (False, True) for index, case in enumerate(
    list(itertools.product(IRREPS_IN[:1], IRREPS_OUT, (1, 2, 3))) + [(IRREPS_IN[1], "0e+1o", 3)])]


@pytest.mark.parametrize("irreps_in,irreps_out,correlation,elements,use_reduced_cg", CASES)
def test_equals_mace_symmetric_contraction(irreps_in, irreps_out, correlation, elements, use_reduced_cg):
    import torch

    spec = tpc.SymmetricContraction(_with_channels(irreps_in), _with_channels(irreps_out), correlation, elements,
                                    "reduced" if use_reduced_cg else "wigner")
    module = _mace_module(spec, use_reduced_cg)
    for contraction, (_, ir) in zip(module.contractions, spec.irreps_out):
        for nu in range(1, correlation + 1):
            theirs = getattr(contraction, f"U_matrix_{nu}").numpy()
            assert np.array_equal(spec.coupling(ir, nu).shape, theirs.shape)
            assert np.abs(spec.coupling(ir, nu) - theirs).max() < 1e-13, (ir, nu)
    rng = np.random.default_rng(correlation)
    x = rng.standard_normal((7, CHANNELS, spec.coupling_irreps.dim))
    y = np.eye(elements)[rng.integers(0, elements, 7)]
    expected = module(torch.tensor(x), torch.tensor(y)).detach().numpy()
    actual = spec.reference(x, y, _weights(module, spec))
    assert relative_error(actual, expected) < 1e-10


def test_the_spec_is_a_value_and_bad_arguments_are_named():
    spec = tpc.SymmetricContraction("4x0e+4x1o", "4x0e+4x1o", 2, 3)
    assert tpc.SymmetricContraction.from_dict(spec.to_dict()) == spec
    assert spec.fingerprint != tpc.SymmetricContraction("4x0e+4x1o", "4x0e+4x1o", 3, 3).fingerprint
    assert spec.nonzeros() > 0 and spec.flops(10) == 10 * spec.flops()
    with pytest.raises(ValueError, match="same multiplicity"):
        tpc.SymmetricContraction("4x0e+3x1o", "4x0e", 2, 3)
    with pytest.raises(ValueError, match="correlation must be a positive integer"):
        tpc.SymmetricContraction("4x0e", "4x0e", 0, 3)
    with pytest.raises(ValueError, match="has an irrep twice"):
        tpc.SymmetricContraction("4x0e+4x0e", "4x0e", 1, 3)
    with pytest.raises(ValueError, match="basis must be one of"):
        tpc.SymmetricContraction("4x0e", "4x0e", 1, 3, "cueq")
    reduced = tpc.SymmetricContraction("4x0e+4x1o", "4x0e+4x1o", 2, 3, "reduced")
    assert tpc.SymmetricContraction.from_dict(reduced.to_dict()) == reduced
    assert reduced.fingerprint != spec.fingerprint and "basis" not in spec.to_dict()
    assert [shape for _, _, shape in reduced.weight_shapes()] != [shape for _, _, shape in spec.weight_shapes()]
    with pytest.raises(ValueError, match="not a tpc.SymmetricContraction"):
        tpc.SymmetricContraction.from_dict({"format": "x"})
    with pytest.raises(ValueError, match="x must be"):
        spec.reference(np.zeros((2, 4, 3)), np.zeros((2, 3)), [])

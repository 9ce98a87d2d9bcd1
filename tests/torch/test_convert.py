"""TensorProduct.from_e3nn and tpc.torch.convert: e3nn modules and real mace-torch models
converted, equal to the originals, loading their state_dicts, and surviving torch.save,
TorchScript and torch.export in fresh processes; the same against e3nn 0.4.4."""

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from e3nn import o3

import tpc
import tpc.torch
from tpc.torch.mace import batch_for, evaluate, example_atoms, example_model
from tpc.verify import relative_error, tolerance

E3NN_044 = Path(__file__).parents[2] / "build" / "e3nn-0.4.4"


@pytest.fixture(autouse=True)
def float64_default():
    """e3nn computes its coupling buffers in the default dtype: float64 makes them exact."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


E3NN_MODULES = {
    "fully-connected": lambda: o3.FullyConnectedTensorProduct("2x0e+1o+2x2e", "0e+1o+2e", "3x0e+2x1o+1e"),
    "norm-path": lambda: o3.FullyConnectedTensorProduct("2x0e+1o", "0e+1o", "3x0e+2x1o", irrep_normalization="norm",
                                                        path_normalization="path"),
    "elementwise": lambda: o3.ElementwiseTensorProduct("2x0e+3x1o", "2x1o+3x1e"),
    "full": lambda: o3.FullTensorProduct("2x0e+1o", "1o+2e"),
    "uvu-per-sample": lambda: o3.TensorProduct("3x0e+3x1o", "0e+1o", "3x0e+3x1o+3x1e",
                                               [(0, 0, 0, "uvu", True), (1, 1, 0, "uvu", True),
                                                (1, 1, 2, "uvu", True), (1, 0, 1, "uvu", True)],
                                               shared_weights=False, internal_weights=False),
    "variances-and-path-weights": lambda: o3.TensorProduct(
        "2x1o+0e", "1o", "2x0e+2x1e+1o", [(0, 0, 0, "uvu", True), (0, 0, 1, "uvu", True, 2.5), (1, 0, 2, "uvw", True)],
        in1_var=[3.0, 0.5], out_var=[1.0, 2.0, 0.7]),
    "uvv-uuw-uuu-uvuv": lambda: o3.TensorProduct(
        "2x1o", "2x1o", "2x0e+1x0e+2x1e+4x2e",
        [(0, 0, 0, "uvv", True), (0, 0, 1, "uuw", True), (0, 0, 2, "uuu", False), (0, 0, 3, "uvuv", True)]),
}


def _arguments(module, batch=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x1 = torch.randn(batch, module.irreps_in1.dim, generator=generator)
    x2 = torch.randn(batch, module.irreps_in2.dim, generator=generator)
    weight = None
    if module.weight_numel and not module.internal_weights:
        shape = (module.weight_numel,) if module.shared_weights else (batch, module.weight_numel)
        weight = torch.randn(*shape, generator=generator)
    return x1, x2, weight


@pytest.mark.parametrize("name", E3NN_MODULES)
def test_the_spec_of_an_e3nn_module_computes_its_function(name):
    module = E3NN_MODULES[name]()
    spec = tpc.TensorProduct.from_e3nn(module)
    x1, x2, weight = _arguments(module)
    expected = module(x1, x2, weight).detach().numpy()
    weights = module.weight.detach().numpy() if module.internal_weights else None if weight is None else weight.numpy()
    assert spec.weight_numel == module.weight_numel and spec.shared_weights == module.shared_weights
    assert relative_error(spec.reference(x1.numpy(), x2.numpy(), weights), expected) < 1e-12


def test_e3nn_defaults_give_the_spec_tpc_builds():
    module = o3.FullyConnectedTensorProduct("4x0e+2x1o", "0e+1o", "3x0e+1o")
    assert tpc.TensorProduct.from_e3nn(module) == tpc.FullyConnectedTensorProduct("4x0e+2x1o", "0e+1o", "3x0e+1o")


def test_what_from_e3nn_cannot_read_is_named():
    with pytest.raises(ValueError, match="TensorSquare: instruction 0 .*unknown connection mode 'uvu<v'"):
        tpc.TensorProduct.from_e3nn(o3.TensorSquare("2x1o"))
    with pytest.raises(TypeError, match="Linear is not an e3nn.o3.TensorProduct"):
        tpc.TensorProduct.from_e3nn(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="multiplicity 0"):
        tpc.TensorProduct.from_e3nn(o3.FullyConnectedTensorProduct("0x0e+1o", "1o", "0e"))


def test_a_coupling_table_that_differs_from_tpc_is_named():
    module = o3.FullyConnectedTensorProduct("1o", "1o", "2e")
    buffer = next(buffer for name, buffer in module.named_buffers() if "_w3j_" in name)
    buffer.mul_(-1)
    with pytest.raises(ValueError, match="coupling table .*_w3j_1_1_2 differs"):
        tpc.TensorProduct.from_e3nn(module)


class ToyModel(torch.nn.Module):
    """Three e3nn products, one of which (a tensor square, mode uvu<v) tpc does not compute."""

    def __init__(self):
        super().__init__()
        self.mix = o3.FullyConnectedTensorProduct("2x0e+2x1o", "0e+1o", "2x0e+2x1o")
        self.conv = E3NN_MODULES["uvu-per-sample"]()
        self.square = o3.TensorSquare("3x0e+3x1o")
        self.radial = torch.nn.Linear(2, self.conv.weight_numel)

    def forward(self, x, sh, lengths):
        hidden = self.mix(x, sh)
        features = torch.cat([hidden[:, :2], hidden[:, :1], hidden[:, 2:], hidden[:, 2:5]], dim=1)  # 3x0e+3x1o
        message = self.conv(features, sh, self.radial(lengths))
        return self.square(message[:, :12])


def test_convert_replaces_what_it_computes_and_leaves_the_rest():
    model = ToyModel()
    arguments = (torch.randn(6, 8), torch.randn(6, 4), torch.randn(6, 2, requires_grad=True))
    converted = tpc.torch.convert(model)
    assert type(model.mix).__name__ == "FullyConnectedTensorProduct"  # the original is untouched
    assert isinstance(converted.mix, tpc.torch.TensorProduct) and isinstance(converted.conv, tpc.torch.TensorProduct)
    assert converted.square is not model.square and type(converted.square).__name__ == "TensorSquare"
    report = {entry.path: entry for entry in converted.tpc_conversion}
    assert report["mix"].converted and report["conv"].converted and "per sample" in report["conv"].reason
    assert not report["square"].converted and "unknown connection mode 'uvu<v'" in report["square"].reason
    assert "2 converted, 1 left" in converted.tpc_conversion.table()
    expected, actual = model(*arguments), converted(*arguments)
    assert relative_error(actual.detach().numpy(), expected.detach().numpy()) < 1e-12
    (expected_grad,) = torch.autograd.grad(expected.pow(2).sum(), arguments[2])
    (actual_grad,) = torch.autograd.grad(actual.pow(2).sum(), arguments[2])
    assert relative_error(actual_grad.numpy(), expected_grad.numpy()) < 1e-12


def test_converted_models_load_the_original_state_dict_and_back():
    model = ToyModel()
    converted = tpc.torch.convert(model)
    assert set(converted.state_dict()) == set(model.state_dict())
    trained = ToyModel()
    converted.load_state_dict(trained.state_dict(), strict=True)
    assert torch.equal(converted.mix.weight, trained.mix.weight)
    model.load_state_dict(converted.state_dict(), strict=True)


def test_convert_in_place_and_a_model_that_is_one_product():
    model = ToyModel()
    same = tpc.torch.convert(model, inplace=True)
    assert same is model and isinstance(model.mix, tpc.torch.TensorProduct)
    product = o3.FullyConnectedTensorProduct("2x1o", "1o", "0e")
    converted = tpc.torch.convert(product)
    x1, x2, _ = _arguments(product)
    assert isinstance(converted, tpc.torch.TensorProduct)
    assert relative_error(converted(x1, x2).detach().numpy(), product(x1, x2).detach().numpy()) < 1e-12
    with pytest.raises(TypeError, match="convert takes a torch.nn.Module"):
        tpc.torch.convert(product.instructions)


MACE_SETTINGS = {
    "0e1o-correlation-2": ({"hidden_irreps": "16x0e+16x1o", "correlation": 2}, (torch.float64,)),
    "0e1o-correlation-2-wigner-basis": ({"hidden_irreps": "16x0e+16x1o", "correlation": 2, "use_reduced_cg": False},
                                        (torch.float64,)),
    "0e1o2e-correlation-2": ({"hidden_irreps": "8x0e+8x1o+8x2e", "correlation": 2}, (torch.float64, torch.float32)),
}
"""Model settings and the dtypes each runs in; mace's product basis is its default (cuequivariance's
reduced basis: the test extra installs cuequivariance) unless named. Correlation 2 only: the x gradient of a
correlation-3 product basis on l <= 3 features takes about 25 s to compile per dtype; its
kernels are checked against mace's module in tests/ops and tests/lower."""


@pytest.mark.parametrize("setting", MACE_SETTINGS)
def test_a_converted_mace_model_gives_the_original_energy_forces_and_stress(setting):
    """Two interactions, four elements: float64 to 1e-10, float32 to its rounding (the float32
    model is the float64 one cast, as example_model makes it)."""
    arguments, dtypes = MACE_SETTINGS[setting]
    built = example_model(**arguments)
    limits = {torch.float64: 1e-10, torch.float32: tolerance("float32")}
    for dtype, limit in ((dtype, limits[dtype]) for dtype in dtypes):
        model = built if dtype == torch.float64 else copy.deepcopy(built).float()
        converted = tpc.torch.convert(model)
        assert [entry.path for entry in converted.tpc_conversion.converted] == [
            "interactions.0.conv_tp", "interactions.0.skip_tp", "interactions.1.conv_tp", "interactions.1.skip_tp",
            "products.0.symmetric_contractions", "products.1.symmetric_contractions"]
        bases = {module.spec.basis for module in converted.modules()
                 if isinstance(module, tpc.torch.SymmetricContraction)}
        # Where both bases are the same tensors (0e at correlation 2), the Wigner one is taken.
        assert ("reduced" in bases) if arguments.get("use_reduced_cg", True) else bases == {"wigner"}
        batch = batch_for(model, example_atoms(1))
        expected, actual = evaluate(model, batch), evaluate(converted, batch)
        for key in ("energy", "forces", "stress"):
            error = relative_error(actual[key].numpy(), expected[key].numpy())
            assert error < limit, f"{setting} {dtype} {key}: {error}"


def test_a_training_step_on_forces_gives_the_original_weight_gradients():
    """A loss on energy and forces differentiates the forces: every converted op's second derivatives."""
    model = example_model("8x0e+8x1o", correlation=2)
    converted = tpc.torch.convert(model)
    batch = batch_for(model, example_atoms(1))
    gradients = []
    for candidate in (model, converted):
        data = dict(batch)
        data["positions"] = batch["positions"].detach().clone()
        out = candidate(data, training=True, compute_force=True)
        loss = out["energy"].square().sum() + out["forces"].square().sum()
        named = {name: value for name, value in candidate.named_parameters() if value.requires_grad}
        gradients.append(dict(zip(named, torch.autograd.grad(loss, list(named.values()), allow_unused=True))))
    assert gradients[0].keys() == gradients[1].keys()
    for name, expected in gradients[0].items():
        actual = gradients[1][name]
        if expected is None:
            assert actual is None or not actual.abs().sum(), name
            continue
        assert relative_error(actual.numpy(), expected.numpy()) < 1e-10, name


def test_mace_convolutions_are_fused_unless_fuse_is_false():
    model = example_model("8x0e+8x1o", correlation=2)
    fused, apart = tpc.torch.convert(model), tpc.torch.convert(model, fuse=False)
    for interaction in fused.interactions:
        assert isinstance(interaction.conv_tp, tpc.torch.Convolution) and interaction.conv_fusion == "tpc"
    for interaction in apart.interactions:
        assert isinstance(interaction.conv_tp, tpc.torch.TensorProduct) and not hasattr(interaction, "conv_fusion")
    assert not any(hasattr(interaction, "conv_fusion") for interaction in model.interactions)
    assert all("fused with its gather and scatter-sum" in entry.reason for entry in fused.tpc_conversion.converted
               if entry.path.endswith("conv_tp"))
    batch = batch_for(model, example_atoms(1))
    expected = evaluate(model, batch)
    for converted in (fused, apart):
        actual = evaluate(converted, batch)
        assert relative_error(actual["forces"].numpy(), expected["forces"].numpy()) < 1e-10
    fused.load_state_dict(model.state_dict())
    model.load_state_dict(fused.state_dict())


@pytest.fixture(scope="module")
def saved_mace(tmp_path_factory):
    """A converted mace model saved three ways, with its batch and outputs, in one folder."""
    from e3nn.util import jit

    folder = tmp_path_factory.mktemp("saved-mace")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        converted = tpc.torch.convert(example_model("16x0e+16x1o", correlation=2))
        batch = batch_for(converted, example_atoms(1))
        torch.save(converted, folder / "model.pt")
        arguments = {"training": False, "compute_force": False}
        exported = torch.export.export(converted, (dict(batch),), kwargs=arguments, strict=False)
        torch.export.save(exported, folder / "exported.pt2")
        torch.save({"batch": batch, "outputs": evaluate(converted, batch),
                    "energy": converted(dict(batch), **arguments)["energy"].detach()}, folder / "expected.pt")
        jit.compile(converted).save(str(folder / "scripted.pt"))  # last: it scripts the submodules in place
    finally:
        torch.set_default_dtype(old)
    return folder


FRESH_PROCESS = """
import sys, torch
import tpc.build, tpc.torch
from tpc.torch.mace import evaluate
builds = []
real_build = tpc.build.build
tpc.build.build = lambda request: builds.append(request) or real_build(request)
folder = sys.argv[1]
expected = torch.load(folder + "/expected.pt", weights_only=False)
batch = expected["batch"]
"""


def _run_fresh(script, folder):
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS + textwrap.dedent(script), str(folder)],
                            capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_a_saved_converted_mace_model_runs_in_a_fresh_process_without_compiling(saved_mace):
    out = _run_fresh("""
        model = torch.load(folder + "/model.pt", weights_only=False)
        actual = evaluate(model, batch)
        for key, value in expected["outputs"].items():  # torch's own reductions may split work otherwise
            assert torch.allclose(actual[key], value, rtol=1e-12, atol=1e-14), key
        assert not builds, f"compiled {len(builds)} kernels again"
        print("same outputs, no kernel compiled")
    """, saved_mace)
    assert "same outputs, no kernel compiled" in out


def test_a_scripted_converted_mace_model_loads_in_a_fresh_process(saved_mace):
    out = _run_fresh("""
        model = torch.jit.load(folder + "/scripted.pt")
        actual = evaluate(model, batch)
        for key, value in expected["outputs"].items():
            assert torch.allclose(actual[key], value, rtol=1e-12, atol=1e-14), key
        print("scripted: same outputs")
    """, saved_mace)
    assert "scripted: same outputs" in out


def test_an_exported_converted_mace_model_loads_in_a_fresh_process(saved_mace):
    """torch.export of the energy: mace's forces take torch.autograd.grad inside forward, which
    torch.export does not trace (the original mace model does not export with forces either)."""
    out = _run_fresh("""
        program = torch.export.load(folder + "/exported.pt2")
        energy = program.module()(dict(batch), training=False, compute_force=False)["energy"]
        assert torch.allclose(energy, expected["energy"], rtol=1e-12, atol=0), (energy, expected["energy"])
        print("exported: same energy")
    """, saved_mace)
    assert "exported: same energy" in out


E3NN_044_SCRIPT = """
import e3nn, torch
assert e3nn.__version__ == "0.4.4", e3nn.__version__
from e3nn import o3
import tpc, tpc.torch
from tpc.torch.mace import batch_for, evaluate, example_atoms, example_model
torch.set_default_dtype(torch.float64)
modules = [o3.FullyConnectedTensorProduct("2x0e+1o+2e", "0e+1o+2e", "3x0e+2x1o+2e"),
           o3.ElementwiseTensorProduct("2x0e+3x1o", "2x1o+3x1e"),
           o3.TensorProduct("3x0e+3x1o", "0e+1o", "3x0e+3x1o", [(0, 0, 0, "uvu", True), (1, 1, 0, "uvu", True),
                            (1, 0, 1, "uvu", True)], shared_weights=False, internal_weights=False)]
for module in modules:
    converted = tpc.torch.convert(module)
    x1, x2 = torch.randn(4, module.irreps_in1.dim), torch.randn(4, module.irreps_in2.dim)
    weight = torch.randn(4, module.weight_numel) if not module.shared_weights else None
    error = (converted(x1, x2, weight) - module(x1, x2, weight)).abs().max() / module(x1, x2, weight).abs().max()
    assert error < 1e-12, (type(module).__name__, error)
model = example_model("16x0e+16x1o", correlation=2)
converted = tpc.torch.convert(model)
assert len(converted.tpc_conversion.converted) == 6, converted.tpc_conversion.table()
converted.load_state_dict(model.state_dict(), strict=True)
batch = batch_for(model, example_atoms(1))
expected, actual = evaluate(model, batch), evaluate(converted, batch)
for key in expected:
    error = ((actual[key] - expected[key]).abs().max() / expected[key].abs().max()).item()
    assert error < 1e-10, (key, error)
print("e3nn 0.4.4: products and a mace model converted")
"""


def test_convert_with_e3nn_0_4_4():
    """mace-torch pins e3nn 0.4.4: the converter reads that release's modules too. It lives in
    build/e3nn-0.4.4 (scripts/install-test-deps.sh), first on the path of a child process."""
    assert (E3NN_044 / "e3nn" / "__init__.py").is_file(), "run scripts/install-test-deps.sh: no e3nn 0.4.4 in build/"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(E3NN_044), os.environ.get("PYTHONPATH", "")]),
                   "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-c", E3NN_044_SCRIPT], capture_output=True, text=True, timeout=600,
                            env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "e3nn 0.4.4: products and a mace model converted" in result.stdout


def test_a_model_on_another_dtype_or_device_is_left_with_the_reason():
    model = torch.nn.Sequential(o3.FullyConnectedTensorProduct("1o", "1o", "0e").half())
    converted = tpc.torch.convert(model)
    (entry,) = converted.tpc_conversion
    assert not entry.converted and "float32 or float64" in entry.reason
    assert np.isfinite(converted[0].weight.detach().float().numpy()).all()

"""tpc.torch.mace: real mace-torch models with random weights run on boxes of acetamide and
give finite energies, forces and stress; the atoms are deterministic; models load back."""

import sys

import numpy as np
import pytest
import torch

from tpc.torch.mace import batch_for, evaluate, example_atoms, example_model, load_model

SMALL = {"hidden_irreps": "16x0e+16x1o", "correlation": 2}
"""A model small enough to build in seconds (mace computes its coupling tensors at construction)."""


@pytest.fixture(scope="module")
def model():
    return example_model(**SMALL)


@pytest.fixture(scope="module")
def batch(model):
    return batch_for(model, example_atoms(1))


def test_the_model_gives_finite_energy_forces_and_stress(model, batch):
    out = evaluate(model, batch)
    assert out["energy"].shape == (1,) and out["forces"].shape == (9, 3) and out["stress"].shape == (1, 3, 3)
    assert all(value.dtype == torch.float64 and torch.isfinite(value).all() for value in out.values())
    assert out["forces"].abs().max() > 0
    assert torch.allclose(out["stress"], out["stress"].transpose(1, 2))  # symmetric displacement


def test_evaluate_leaves_the_batch_as_it_was(model, batch):
    positions = batch["positions"].clone()
    first, second = evaluate(model, batch), evaluate(model, batch, stress=False)
    assert not batch["positions"].requires_grad and torch.equal(batch["positions"], positions)
    assert set(second) == {"energy", "forces"}
    assert torch.equal(first["energy"], second["energy"]) and torch.equal(first["forces"], second["forces"])


def test_forces_are_minus_the_gradient_of_the_energy(model, batch):
    """A central difference of the energy along one coordinate of one atom."""
    forces = evaluate(model, batch, stress=False)["forces"]
    step = 1e-5
    shifted = []
    for sign in (1, -1):
        moved = dict(batch, positions=batch["positions"].clone())
        moved["positions"][4, 1] += sign * step
        shifted.append(evaluate(model, moved, stress=False)["energy"].item())
    assert (shifted[0] - shifted[1]) / (2 * step) == pytest.approx(-forces[4, 1].item(), rel=1e-5, abs=1e-8)


def test_a_float32_model_is_the_float64_model_rounded(model, batch):
    single = example_model(**SMALL, dtype=torch.float32)
    assert all(p.dtype == torch.float32 for p in single.parameters())
    single_batch = batch_for(single, example_atoms(1))
    assert single_batch["positions"].dtype == torch.float32 and single_batch["edge_index"].dtype == torch.int64
    ours, reference = evaluate(single, single_batch), evaluate(model, batch)
    for key in ours:
        assert torch.allclose(ours[key].double(), reference[key], rtol=1e-4, atol=1e-4), key


def test_example_model_checks_its_dtype():
    with pytest.raises(ValueError, match="float32 or torch.float64"):
        example_model(**SMALL, dtype=torch.float16)


@pytest.mark.parametrize("copies", [1, 2])
def test_example_atoms_is_a_deterministic_periodic_box_of_acetamide(copies):
    atoms = example_atoms(copies)
    assert len(atoms) == 9 * copies**3
    molecules = copies**3
    assert dict(atoms.symbols.formula.count()) == {"C": 2 * molecules, "H": 5 * molecules, "N": molecules,
                                                   "O": molecules}
    assert atoms.pbc.all() and np.allclose(atoms.cell[:], np.eye(3) * 5.0 * copies)
    assert np.array_equal(atoms.positions, example_atoms(copies).positions)
    assert not np.allclose(atoms.positions, example_atoms(copies, seed=1).positions)


def test_the_reference_system_has_several_thousand_edges(model):
    batch = batch_for(model, example_atoms(3))
    assert batch["positions"].shape == (243, 3)
    assert 6000 < batch["edge_index"].shape[1] < 9000


def test_example_atoms_needs_a_molecule():
    with pytest.raises(ValueError, match="at least 1"):
        example_atoms(0)


def test_a_batch_of_several_systems_gives_one_energy_each(model):
    batch = batch_for(model, [example_atoms(1), example_atoms(1, seed=1)])
    assert batch["ptr"].tolist() == [0, 9, 18]
    out = evaluate(model, batch)
    assert out["energy"].shape == (2,) and out["forces"].shape == (18, 3) and out["stress"].shape == (2, 3, 3)
    alone = evaluate(model, batch_for(model, example_atoms(1, seed=1)))
    assert torch.allclose(out["energy"][1:], alone["energy"], rtol=1e-12)
    assert torch.allclose(out["forces"][9:], alone["forces"], rtol=1e-10, atol=1e-12)


def test_load_model_round_trips_a_saved_model(model, batch, tmp_path):
    path = tmp_path / "small.model"
    torch.save(model, path)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    expected, got = evaluate(model, batch), evaluate(loaded, batch)
    assert all(torch.equal(expected[key], got[key]) for key in expected)


def test_load_model_says_when_the_file_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file at .*absent.model"):
        load_model(tmp_path / "absent.model")


def test_load_model_says_when_the_file_is_not_a_model(tmp_path):
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="not a model saved with torch.save"):
        load_model(garbage)
    weights = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, weights)
    with pytest.raises(ValueError, match="holds a dict, not a torch.nn.Module .*state_dict"):
        load_model(weights)


def test_without_mace_the_error_says_how_to_install_it(monkeypatch):
    """``None`` in sys.modules makes Python's import fail as it does for a package that is not installed."""
    for name in [name for name in sys.modules if name == "mace" or name.startswith("mace.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mace", None)
    with pytest.raises(ImportError, match=r"pip install --no-deps mace-torch==0\.3\.16"):
        example_model(**SMALL)

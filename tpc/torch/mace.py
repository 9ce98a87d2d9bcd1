"""Real mace-torch systems without downloads: a model with random weights, periodic boxes of
acetamide, the batch dict a MACE model takes, loading saved models, and evaluation.

The tests, the MACE benchmark and the MACE example build their systems here, so that every one
of them runs mace-torch's own code on the same reference system (27 acetamide molecules, 243
atoms, about 7500 edges at a 5 Angstrom cutoff). mace-torch and ase are imported inside the
functions: ``import tpc.torch.mace`` needs neither.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    import ase

INSTALL_HINT = ("pip install --no-deps mace-torch==0.3.16 (every release pins e3nn 0.4.4, and its models run on "
                "e3nn 0.6.0) plus its runtime dependencies, which tpc's test extra lists: pip install -e '.[test]'")

SPACING = 5.0
"""Angstrom between neighbouring molecules of :func:`example_atoms`: at a 5 Angstrom cutoff, 27
molecules have about 7500 edges (about 31 neighbours per atom)."""


def _mace():
    """mace's ``data``, ``modules``, ``tools`` and ``torch_geometric``, or an ImportError saying how to install it."""
    try:
        from mace import data, modules, tools
        from mace.tools import torch_geometric
    except ImportError as error:
        raise ImportError(f"tpc.torch.mace needs mace-torch and ase ({error}); install them with: {INSTALL_HINT}") \
            from error
    return data, modules, tools, torch_geometric


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """torch's default dtype set to ``dtype`` inside, restored on exit (mace builds buffers and data in it)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter or buffer (float64 if it has none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float64


def example_model(hidden_irreps: str = "128x0e+128x1o", *, correlation: int = 3, num_interactions: int = 2,
                  atomic_numbers: Sequence[int] = (1, 6, 7, 8), max_ell: int = 3, r_max: float = 5.0,
                  dtype: torch.dtype = torch.float64, seed: int = 0, use_reduced_cg: bool = True) -> torch.nn.Module:
    """A ``mace.modules.ScaleShiftMACE`` with random weights, built as mace's own tests build it.

    Residual interaction blocks (``RealAgnosticResidualInteractionBlock``), 8 Bessel functions
    with a polynomial cutoff of order 6, a 16x0e nonlinear readout gated by SiLU, harmonics up
    to ``max_ell``; the weights are mace's initialization under ``torch.manual_seed(seed)``
    (the global random state is left as it was), so the same arguments give the same model.
    It is built in float64 and then cast, so the float32 and float64 models of one seed are
    the same model up to rounding.

    Args:
        hidden_irreps: the node features between interactions, e.g. "128x0e+128x1o".
        correlation: the body order of the symmetric contraction.
        num_interactions: how many interaction + product blocks.
        atomic_numbers: the elements the model knows (the one-hot node attributes).
        max_ell: the highest degree of the edge harmonics.
        r_max: the cutoff in Angstrom.
        dtype: torch.float64 or torch.float32.
        seed: the seed of the random weights and atomic energies.
        use_reduced_cg: mace's choice of product basis (its default): with cuequivariance
            installed, cuequivariance's reduced basis; otherwise, or when False, the Wigner 3j one.

    Returns:
        The model in eval mode, every parameter and buffer in ``dtype``.
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    _, modules, _, _ = _mace()
    import torch.nn.functional as F
    from e3nn import o3

    atomic_numbers = sorted(int(z) for z in atomic_numbers)
    atomic_energies = -np.random.default_rng(seed).uniform(1.0, 10.0, len(atomic_numbers))
    with _default_dtype(torch.float64), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = modules.ScaleShiftMACE(
            r_max=r_max, num_bessel=8, num_polynomial_cutoff=6, max_ell=max_ell,
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            num_interactions=num_interactions, num_elements=len(atomic_numbers),
            hidden_irreps=o3.Irreps(hidden_irreps), MLP_irreps=o3.Irreps("16x0e"), gate=F.silu,
            atomic_energies=atomic_energies, avg_num_neighbors=30.0, atomic_numbers=atomic_numbers,
            correlation=correlation, radial_type="bessel", atomic_inter_scale=1.0, atomic_inter_shift=0.0,
            use_reduced_cg=use_reduced_cg)
    return model.to(dtype).eval()


def example_atoms(copies: int = 3, seed: int = 0) -> ase.Atoms:
    """A periodic cubic box of ``copies**3`` acetamide molecules (CH3CONH2, 9 atoms each).

    The molecules sit on a cubic lattice 5 Angstrom apart, each turned by up to 20 degrees about
    a random axis and shifted by up to 0.1 Angstrom: with ``copies=3`` (243 atoms) a 5 Angstrom
    cutoff gives about 7500 edges. The same arguments give the same atoms.

    Args:
        copies: molecules along each edge of the box.
        seed: the seed of the rotations and shifts.

    Returns:
        ``ase.Atoms`` with a cubic cell of side ``5 * copies`` Angstrom, periodic in x, y and z.
    """
    try:
        from ase import Atoms
        from ase.build import molecule
    except ImportError as error:
        raise ImportError(f"tpc.torch.mace needs ase ({error}); install it with: {INSTALL_HINT}") from error
    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    rng = np.random.default_rng(seed)
    base = molecule("CH3CONH2")
    base.positions -= base.get_center_of_mass()
    atoms = Atoms(cell=np.eye(3) * SPACING * copies, pbc=True)
    for site in np.ndindex(copies, copies, copies):
        copy = base.copy()
        copy.rotate(rng.uniform(0.0, 20.0), rng.normal(size=3), center=(0.0, 0.0, 0.0))
        copy.positions += (np.array(site) + 0.5) * SPACING + rng.uniform(-0.1, 0.1, 3)
        atoms += copy
    return atoms


def batch_for(model: torch.nn.Module, atoms_list: ase.Atoms | Sequence[ase.Atoms], *,
              r_max: float | None = None) -> dict[str, torch.Tensor]:
    """The dict ``model(batch, training=False, compute_force=True, compute_stress=True)`` takes.

    Built with mace's own data path (``config_from_atoms``, ``AtomicData.from_config`` with the
    model's atomic numbers, mace's DataLoader), in float64, then cast to the model's dtype.

    Args:
        model: a MACE model (its ``atomic_numbers`` and ``r_max`` buffers are read).
        atoms_list: one ``ase.Atoms`` or several, batched into one graph.
        r_max: the cutoff of the edges; the model's own by default.

    Returns:
        The batch as a dict of tensors (positions, cell, edge_index, shifts, node_attrs, batch, ptr...).
    """
    data, _, tools, torch_geometric = _mace()
    from ase import Atoms

    if isinstance(atoms_list, Atoms):
        atoms_list = [atoms_list]
    table = tools.AtomicNumberTable([int(z) for z in model.atomic_numbers])
    cutoff = float(model.r_max) if r_max is None else float(r_max)
    with _default_dtype(torch.float64):
        dataset = [data.AtomicData.from_config(data.config_from_atoms(atoms), z_table=table, cutoff=cutoff)
                   for atoms in atoms_list]
        loader = torch_geometric.dataloader.DataLoader(dataset=dataset, batch_size=len(dataset), shuffle=False,
                                                       drop_last=False)
        batch = next(iter(loader)).to_dict()
    dtype = model_dtype(model)
    return {key: value.to(dtype) if value.is_floating_point() else value
            for key, value in batch.items() if isinstance(value, torch.Tensor)}


def load_model(path: str | Path) -> torch.nn.Module:
    """A model saved whole with ``torch.save``: a mace ``.model`` file or any other module, on the CPU.

    Loading unpickles Python objects (``weights_only=False``): load only files you trust.

    Args:
        path: the file.

    Returns:
        The module, as saved (call ``.eval()`` for inference).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not something torch.load reads, or holds no ``torch.nn.Module``
            (e.g. a state_dict).
    """
    _mace()  # unpickling a mace model imports mace
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    return read_module(path)


def read_module(path: Path) -> torch.nn.Module:
    """The ``torch.nn.Module`` an existing file holds (``torch.save``d whole), on the CPU; needs no mace.

    Raises:
        ValueError: the file is not something torch.load reads, or holds no module.
    """
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch.load raises many kinds (UnpicklingError, RuntimeError, EOFError...)
        raise ValueError(f"{path} is not a model saved with torch.save: {type(error).__name__}: {error}") from None
    if not isinstance(model, torch.nn.Module):
        hint = " (a state_dict: load it into a model built with the same arguments)" if isinstance(model, dict) else ""
        raise ValueError(f"{path} holds a {type(model).__name__}, not a torch.nn.Module{hint}")
    return model


def evaluate(model: torch.nn.Module, batch: dict[str, torch.Tensor], *, stress: bool = True) -> dict[str, torch.Tensor]:
    """Energy, forces and (if ``stress``) stress of a batch, called as mace's calculator calls the model.

    mace marks ``batch["positions"]`` as requiring a gradient and, with stress, replaces entries
    of the dict it is given; the call gets a copy of the dict with fresh positions, so ``batch``
    is left as it was and can be evaluated again (by this model or another).

    Args:
        model: a MACE model (or a converted one).
        batch: from :func:`batch_for`.
        stress: also compute the stress (through a displacement of the cell).

    Returns:
        "energy" (graphs,), "forces" (atoms, 3) and, with ``stress``, "stress" (graphs, 3, 3), detached.
    """
    data = dict(batch)
    data["positions"] = batch["positions"].detach().clone()
    out = model(data, training=False, compute_force=True, compute_stress=stress)
    keys = ("energy", "forces", "stress") if stress else ("energy", "forces")
    return {key: out[key].detach() for key in keys}

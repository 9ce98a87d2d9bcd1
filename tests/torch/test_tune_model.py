"""``tpc tune --model``: the kernels a saved model runs, found by running it once, tuned with one
budget at their row counts and dtype; a later conversion in a fresh process compiles them with
the tuned schedules; bad inputs are one-line errors with exit status 2."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tpc.cli import main
from tpc.ops import Contraction, ConvolutionGradient, Fused, Gradient, Product, TensorProduct
from tpc.records import read_records

SMALL = {"hidden_irreps": "16x0e+16x1o", "correlation": 2, "num_interactions": 1}
"""One interaction: five kernels per energy-and-forces run (the skip product, the convolution
and its three gradients), built in seconds."""

CHECK = """
import json, sys
import ase.io, torch
import tpc.torch
from tpc.torch.mace import batch_for, evaluate

model = torch.load(sys.argv[1], weights_only=False).eval()
converted = tpc.torch.convert(model)
batch = batch_for(model, ase.io.read(sys.argv[2]))
ours, theirs = evaluate(converted, batch, stress=False), evaluate(model, batch, stress=False)
sources = {f"{path} {what} {dtype}": kernel.schedule.source for path, module in converted.named_modules()
           if isinstance(module, (tpc.torch.TensorProduct, tpc.torch.Convolution, tpc.torch.SymmetricContraction))
           for (what, dtype), kernel in module.kernels().items()}
print(json.dumps({"sources": sources, "forces": float((ours["forces"] - theirs["forces"]).abs().max())}))
"""
"""Run in a fresh process: convert the model, evaluate it, report each kernel's schedule source."""


@pytest.fixture(scope="module")
def mace_files(tmp_path_factory):
    """A small mace model saved whole, the 1-copy acetamide box as an xyz file, and what they run."""
    import ase.io

    import tpc.torch
    from tpc.torch.mace import batch_for, example_atoms, example_model

    folder = tmp_path_factory.mktemp("mace")
    model = example_model(**SMALL)
    torch.save(model, folder / "small.model")
    atoms = example_atoms(1)
    ase.io.write(folder / "acetamide.xyz", atoms)
    edges = batch_for(model, atoms)["edge_index"].shape[1]
    conv = TensorProduct.from_e3nn(model.interactions[0].conv_tp)
    skip = TensorProduct.from_e3nn(model.interactions[0].skip_tp)
    basis = tpc.torch.convert(model).products[0].symmetric_contractions.spec
    expected = {(Product(skip).fingerprint, len(atoms)), (Fused(conv, "gather+scatter").fingerprint, edges),
                (ConvolutionGradient(conv).fingerprint, edges), (Contraction(basis).fingerprint, len(atoms)),
                (Contraction(basis, "x").fingerprint, len(atoms))}
    return folder, expected


def _tpc(*argv, cwd, env):
    """The tpc command in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "tpc.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env={**os.environ, **env})


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("tpc")]
    assert len(errors) == 1 and errors[0].startswith("tpc: error: "), err
    return errors[0]


def test_tune_model_tunes_the_kernels_the_model_runs_and_a_later_convert_uses_them(mace_files, tmp_path):
    folder, expected = mace_files
    env = {"TPC_CACHE": str(tmp_path / "cache")}
    result = _tpc("tune", "--model", folder / "small.model", "--structure", folder / "acetamide.xyz",
                  "--trials", "6", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "energy and forces on" in result.stderr and "9 atoms" in result.stderr
    assert "one run calls 5 tpc kernels: 5 tasks" in result.stderr and "[   6/6] model kernels" in result.stderr
    table = result.stdout
    for label in ("interactions.0.skip_tp (product, 9 rows, float64)", "interactions.0.conv_tp (gather+scatter, ",
                  "interactions.0.conv_tp (convolution gradients, ",
                  "products.0.symmetric_contractions (symmetric contraction, 9 rows, float64)",
                  "products.0.symmetric_contractions (symmetric contraction, d/dx, 9 rows, float64)"):
        assert label in table
    assert "products per model call: default" in table
    cached = read_records(tmp_path / "cache" / "schedules.jsonl")
    assert {(record.op, record.batch) for record in cached} == expected  # every kernel, at its own row count
    assert {record.dtype for record in cached} == {"float64"}  # the model's dtype
    assert len(list((tmp_path / "tuning_logs").glob("*.jsonl"))) == 5

    check = subprocess.run([sys.executable, "-c", CHECK, folder / "small.model", folder / "acetamide.xyz"],
                           capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert check.returncode == 0, check.stderr
    report = json.loads(check.stdout.strip().splitlines()[-1])
    assert report["sources"] == {f"interactions.0.{name} float64": "user cache" for name in (
        "skip_tp forward", "conv_tp convolution", "conv_tp convolution-gradient")} | {
        f"products.0.symmetric_contractions {what} float64": "user cache"
        for what in ("symmetric-contraction", "symmetric-contraction:x")}
    assert report["forces"] < 1e-9


def test_a_generic_model_runs_on_its_saved_arguments(isolated, capsys, monkeypatch):
    """Any module with e3nn products: the saved tuple is its positional arguments, and a saved
    tensor that requires grad gets its gradient; the Python API's later convert uses the records."""
    from e3nn import o3

    import tpc.torch

    monkeypatch.chdir(isolated)
    model = o3.FullyConnectedTensorProduct("4x0e+4x1o", "0e+1o", "4x0e+4x1o")
    torch.save(model, isolated / "tp.pt")
    x1, x2 = torch.randn(50, 16, requires_grad=True), torch.randn(50, 4)
    torch.save((x1, x2), isolated / "inputs.pt")
    assert main(["tune", "--model", str(isolated / "tp.pt"), "--inputs", str(isolated / "inputs.pt"),
                 "--trials", "4"]) == 0
    captured = capsys.readouterr()
    assert "FullyConnectedTensorProduct called on the arguments in" in captured.err
    for label in ("(model) (product, 50 rows, float32)", "(model) (d/dx1, 50 rows, float32)"):
        assert label in captured.out
    spec = TensorProduct.from_e3nn(model)
    cached = read_records(isolated / "cache" / "schedules.jsonl")
    assert {(record.op, record.batch, record.dtype) for record in cached} == {
        (op.fingerprint, 50, "float32") for op in (Product(spec), Gradient(spec, "x1"))}  # the weights' unused

    converted = tpc.torch.convert(model)
    torch.autograd.grad(converted(x1, x2).sum(), x1)
    assert {key: kernel.schedule.source for key, kernel in converted.kernels().items()} == {
        ("forward", "float32"): "user cache", ("x1", "float32"): "user cache"}


def test_bad_models_inputs_and_structures_are_one_line_errors(mace_files, isolated, capsys, monkeypatch):
    import ase
    import ase.io

    folder, _ = mace_files
    monkeypatch.chdir(isolated)
    (isolated / "garbage.model").write_bytes(b"\x00 not a pickle")
    torch.save(torch.nn.Linear(4, 2), isolated / "linear.pt")
    torch.save((torch.randn(3, 4),), isolated / "linear-inputs.pt")
    (isolated / "bad.xyz").write_text("this is not\na structure\n")
    ase.io.write(isolated / "silicon.xyz", ase.Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]]))
    torch.save({"positions": torch.zeros(3, 3)}, isolated / "partial-batch.pt")
    mace_model, xyz = str(folder / "small.model"), str(folder / "acetamide.xyz")
    cases = [
        (["--model", "missing.model"], "model file 'missing.model' does not exist"),
        (["--model", "garbage.model"], "is not a model saved with torch.save"),
        (["--model", "linear.pt", "--inputs", "linear-inputs.pt"], "Linear has no tensor product tpc computes"),
        (["--model", "linear.pt"], "give its inputs with --inputs"),
        (["--model", mace_model, "--structure", "bad.xyz"], "structure file 'bad.xyz': ase cannot read it"),
        (["--model", mace_model, "--structure", "missing.xyz"], "structure file 'missing.xyz' does not exist"),
        (["--model", mace_model, "--structure", "silicon.xyz"], "atomic numbers [14], the model knows [1, 6, 7, 8]"),
        (["--model", mace_model, "--inputs", "partial-batch.pt"], "the inputs do not fit the model"),
        (["--model", mace_model, "--inputs", "linear-inputs.pt"], "a mace model takes a dict of tensors"),
        (["--model", mace_model, "--structure", xyz, "--trials", "4"], "at least the number of tasks (5), got 4"),
        (["--model", mace_model, "--preset", "mace-l2"], "--preset does not go with --model"),
        (["--inputs", "linear-inputs.pt"], "give --model too"),
    ]
    for argv, message in cases:
        assert main(["tune", *argv]) == 2, argv
        assert message in _one_line_error(capsys.readouterr().err), argv
    assert not (isolated / "cache" / "schedules.jsonl").exists()

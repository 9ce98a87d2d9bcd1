"""Compiled graphs saved to one file and loaded back, here and in a fresh process without the compiler."""

import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest

import tpc
from tpc.archive import DIGEST, MANIFEST, read_archive, write_archive
from tpc.graph import Graph, load_graph
from tpc.graph.compiler import compile_graph
from tpc.graph.runtime import GRAPH_FILE_FORMAT
from tpc.verify import relative_error, tolerance

from .test_graph import block_inputs, interaction_block

COMPILER_MODULES = ("tpc.build", "tpc.lower", "tpc.schedule", "tpc.tune", "tpc.graph.compiler", "tpc.graph.lower")


@pytest.fixture(scope="module", params=["none", "gather+scatter"])
def compiled(request):
    """The interaction block compiled one kernel per node, and with its product fused."""
    return compile_graph(interaction_block()[0], dtype="float64", fusion=request.param)


@pytest.fixture(scope="module")
def gaunt_graph():
    """A Gaunt product of degree 4 (the grid algorithm, whose kernel has constant tables) and a sum."""
    signal = tpc.Irreps.spherical_harmonics(4)
    g = Graph()
    x1, x2 = g.input("x1", ("rows", signal), "float64"), g.input("x2", ("rows", signal), "float64")
    product = g.tensor_product(x1, x2, None, tpc.GauntTensorProduct(signal, signal, 4), name="product")
    g.output("y", g.elementwise("add", product, product, name="y"))
    compiled = compile_graph(g, dtype="float64", tuned=False)
    assert compiled.steps[0].kernel.tables
    return compiled


def _run_in_fresh_process(path, inputs: dict, folder) -> dict:
    """Load the compiled graph at ``path`` in a new Python process, check that no compiler module
    was imported there, and return its outputs for ``inputs``."""
    np.savez(folder / "inputs.npz", **inputs)
    script = f"""
import sys
import numpy as np
import tpc
compiled = tpc.load_graph({str(path)!r})
compiler = sorted(name for name in sys.modules if name.startswith({COMPILER_MODULES!r}))
assert not compiler, compiler
with np.load({str(folder / "inputs.npz")!r}) as data:
    outputs = compiled(**data)
np.savez({str(folder / "outputs.npz")!r}, **outputs)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with np.load(folder / "outputs.npz") as data:
        return dict(data)


def test_saved_graph_gives_the_same_outputs_in_a_fresh_process(compiled, tmp_path, rng):
    path = tmp_path / "block.tpcg"
    compiled.save(path)
    inputs = block_inputs(compiled.graph, rng, atoms=17, cutoff=2.2)
    order = rng.permutation(len(inputs["senders"]))
    for name in ("senders", "receivers", "w_tp"):
        inputs[name] = inputs[name][order]
    expected = compiled(**inputs)
    got = _run_in_fresh_process(path, inputs, tmp_path)
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


def test_loaded_graph_keeps_its_steps_and_saves_again(compiled, tmp_path, rng):
    path = tmp_path / "block.tpcg"
    compiled.save(path)
    loaded = load_graph(path)
    assert loaded.graph.to_json() == compiled.graph.to_json()
    assert (loaded.dtype, loaded.target.fingerprint, loaded.edge_order) == \
        (compiled.dtype, compiled.target.fingerprint, compiled.edge_order)
    assert [step.to_dict() for step in loaded.steps] == [step.to_dict() for step in compiled.steps]
    assert [step.schedule for step in loaded.steps] == [step.schedule for step in compiled.steps]
    again = tmp_path / "again.tpcg"
    loaded.save(again)
    inputs = block_inputs(compiled.graph, rng, atoms=12, cutoff=2.5)
    expected = compiled(**inputs)
    for result in (loaded(**inputs), load_graph(again)(**inputs)):
        for name in expected:
            np.testing.assert_array_equal(result[name], expected[name])
    assert not list(tmp_path.glob("*.partial"))


def test_constant_tables_travel_with_the_graph(gaunt_graph, tmp_path, rng):
    path = tmp_path / "gaunt.tpcg"
    gaunt_graph.save(path)
    with tarfile.open(path) as archive:
        assert archive.getnames() == [MANIFEST, "kernels/0.so", "kernels/0.npz", "kernels/1.so", DIGEST]
    x1, x2 = rng.standard_normal((2, 7, 25))
    expected = gaunt_graph(x1=x1, x2=x2)["y"]
    assert relative_error(expected, gaunt_graph.graph.reference(x1=x1, x2=x2)["y"]) < tolerance("float64")
    got = _run_in_fresh_process(path, {"x1": x1, "x2": x2}, tmp_path)["y"]
    np.testing.assert_array_equal(got, expected)


def _rewrite(path, target, manifest_edit=None, member_edit=None) -> None:
    """Copy a compiled-graph file, changing its manifest or its other members on the way (its digest
    rewritten to match)."""
    members = read_archive(path)
    manifest = json.loads(members.pop(MANIFEST))
    if manifest_edit:
        manifest_edit(manifest)
    if member_edit:
        member_edit(members)
    write_archive(target, {MANIFEST: json.dumps(manifest).encode(), **members})


def _flip_a_byte(members: dict, name: str) -> None:
    data = bytearray(members[name])
    data[len(data) // 2] ^= 0xFF
    members[name] = bytes(data)


def _drop_a_step_field(manifest: dict) -> None:
    del manifest["steps"][0]["arguments"]


def _swap_kernel_kinds(manifest: dict) -> None:
    manifest["steps"][0]["kind"] = "fused_gather"


@pytest.mark.parametrize("manifest_edit, member_edit, message", [
    (None, lambda members: _flip_a_byte(members, "kernels/0.so"), "library checksum does not match"),
    (None, lambda members: _flip_a_byte(members, "kernels/0.npz"), "table checksum does not match"),
    (None, lambda members: members.pop("kernels/1.so"), "the manifest names library 'kernels/1.so'"),
    (lambda manifest: manifest.update(format="tpc.Kernel/1"), None, "not a tpc.CompiledGraph/1 file"),
    (lambda manifest: manifest.update(tvm_version="0.1"), None, "built with tpc .* / TVM 0.1"),
    (lambda manifest: manifest["target"].update(tvm={"kind": "llvm", "mtriple": "aarch64-linux-gnu"}), None,
     "cannot load this compiled graph here"),
    (lambda manifest: manifest["target"]["cpu_features"].append("+invented-isa"), None,
     "CPU features this machine lacks: invented-isa"),
    (lambda manifest: manifest.update(dtype="float16"), None, "corrupt manifest .*dtype must be one of"),
    (lambda manifest: manifest["graph"].update(outputs={}), None, "corrupt manifest .*no outputs"),
    (_drop_a_step_field, None, "corrupt manifest .*'arguments'"),
    (_swap_kernel_kinds, None, "corrupt manifest .*step 'product' \\(fused_gather\\) has a kernel for product"),
])
def test_a_damaged_file_is_refused_before_loading_native_code(gaunt_graph, tmp_path, manifest_edit, member_edit,
                                                             message):
    path = tmp_path / "gaunt.tpcg"
    gaunt_graph.save(path)
    damaged = tmp_path / "damaged.tpcg"
    _rewrite(path, damaged, manifest_edit, member_edit)
    with pytest.raises(ValueError, match=message):
        load_graph(damaged)


def test_a_flipped_byte_in_the_manifest_is_refused_by_the_digest(gaunt_graph, tmp_path):
    path = tmp_path / "gaunt.tpcg"
    gaunt_graph.save(path)
    data = path.read_bytes()
    start = data.index(b'"edge_order"')
    path.write_bytes(data[:start] + b'"edge_ordeR"' + data[start + len(b'"edge_order"'):])
    with pytest.raises(ValueError, match="gaunt.tpcg: digest does not match the contents"):
        load_graph(path)


def test_a_file_that_is_no_compiled_graph_is_refused(tmp_path, gaunt_graph):
    assert GRAPH_FILE_FORMAT == "tpc.CompiledGraph/1"
    with pytest.raises(ValueError, match="does not exist"):
        load_graph(tmp_path / "missing.tpcg")
    garbage = tmp_path / "garbage.tpcg"
    garbage.write_bytes(b"not a tar file" * 100)
    with pytest.raises(ValueError, match="not a readable tpc file"):
        load_graph(garbage)
    truncated = tmp_path / "truncated.tpcg"
    gaunt_graph.save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated.tpcg: not a readable tpc file"):
        load_graph(truncated)

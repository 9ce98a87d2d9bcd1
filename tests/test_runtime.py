"""Calling kernels, and saving/loading them."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import tpc
from tpc.archive import read_archive, write_archive
from tpc.runtime import LIBRARY, MANIFEST, TABLES
from tpc.targets import host_cpu_features, host_triple
from tpc.verify import check, random_arguments, random_inputs, relative_error, tolerance

TP = tpc.presets.get("mace-small-l2").tp


@pytest.fixture(scope="module")
def kernel():
    return tpc.compile(TP, target="host")


def test_numpy_and_out(kernel, rng):
    x1, x2, weight = random_inputs(TP, 5, rng, np.float32)
    expected = TP.reference(x1, x2, weight)
    out = np.full((5, TP.irreps_out.dim), np.nan, np.float32)
    assert kernel(x1, x2, weight, out=out) is out
    assert relative_error(out, expected) < tolerance("float32")
    assert isinstance(kernel(x1, x2, weight), np.ndarray)


def test_torch_tensors_without_copies(kernel, rng):
    x1, x2, weight = (torch.from_numpy(a) for a in random_inputs(TP, 6, rng, np.float32))
    result = kernel(x1, x2, weight)
    assert isinstance(result, torch.Tensor)
    assert relative_error(result.numpy(), TP.reference(x1.numpy(), x2.numpy(), weight.numpy())) < tolerance("float32")
    out = torch.empty(6, TP.irreps_out.dim)
    pointer = out.data_ptr()
    assert kernel(x1, x2, weight, out=out) is out and out.data_ptr() == pointer
    np.testing.assert_array_equal(out.numpy(), result.numpy())


def test_any_batch_including_empty(kernel, rng):
    for batch in (0, 1, 3, 129):
        x1, x2, weight = random_inputs(TP, batch, rng, np.float32)
        assert kernel(x1, x2, weight).shape == (batch, TP.irreps_out.dim)


def test_unaligned_input_views(kernel, rng):
    x1, x2, weight = random_inputs(TP, 9, rng, np.float32)
    shifted = np.empty(x1.size + 1, np.float32)[1:].reshape(x1.shape)
    shifted[...] = x1
    assert shifted.ctypes.data % 16 != 0
    assert relative_error(kernel(shifted, x2, weight), TP.reference(x1, x2, weight)) < tolerance("float32")


def test_inputs_are_checked_before_tvm_sees_them(kernel, rng):
    x1, x2, weight = random_inputs(TP, 4, rng, np.float32)
    cases = [
        ((x1.astype(np.float64), x2.astype(np.float64), weight.astype(np.float64)), TypeError, "compiled for float32"),
        ((x1[:, :-2].copy(), x2, weight), ValueError, "x1 must have shape"),
        ((np.asfortranarray(x1), x2, weight), ValueError, "C-contiguous"),
        ((x1.tolist(), x2, weight), TypeError, "numpy array or a DLPack tensor"),
        ((x1, x2, weight[:2]), ValueError, "weight must have shape"),
        ((x1, x2, None), ValueError, "weights"),
        ((x1.astype(np.int32), x2, weight), TypeError, "floating-point"),
        ((torch.from_numpy(x1).requires_grad_(), x2, weight), TypeError, "x1 cannot be viewed"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            kernel(*args)
    with pytest.raises(ValueError, match="out must have shape"):
        kernel(x1, x2, weight, out=np.empty((4, 3), np.float32))


def test_save_and_load_in_a_fresh_process(kernel, tmp_path, rng):
    path = tmp_path / "kernel.tpc"
    kernel.save(path)
    x1, x2, weight = random_inputs(TP, 11, rng, np.float32)
    for name, array in (("x1", x1), ("x2", x2), ("w", weight)):
        np.save(tmp_path / f"{name}.npy", array)
    script = f"""
import sys
import numpy as np
import tpc
kernel = tpc.load({str(path)!r})
assert "tpc.tune" not in sys.modules
print(kernel.schedule.source + "|" + kernel.target.name)
out = kernel(*(np.load({str(tmp_path)!r} + f"/{{n}}.npy") for n in ("x1", "x2", "w")))
np.save({str(tmp_path / "out.npy")!r}, out)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{kernel.schedule.source}|host"
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), kernel(x1, x2, weight))


def _rewrite(path, target, manifest_edit=None, library_edit=None):
    """Copy a kernel file, changing its manifest or library on the way (its digest rewritten to match)."""
    members = read_archive(path)
    manifest = json.loads(members[MANIFEST])
    library = members[LIBRARY]
    if manifest_edit:
        manifest_edit(manifest)
    if library_edit:
        library = library_edit(library)
    write_archive(target, {MANIFEST: json.dumps(manifest).encode(), LIBRARY: library})


def test_tampered_or_foreign_files_are_refused(kernel, tmp_path):
    good = tmp_path / "good.tpc"
    kernel.save(good)
    assert tpc.load(good).spec == TP
    flip = tmp_path / "flipped.tpc"
    _rewrite(good, flip, library_edit=lambda lib: lib[:1000] + bytes([lib[1000] ^ 1]) + lib[1001:])
    with pytest.raises(ValueError, match="checksum"):
        tpc.load(flip)
    old = tmp_path / "old.tpc"
    _rewrite(good, old, manifest_edit=lambda m: m.update(tvm_version="0.19.0"))
    with pytest.raises(ValueError, match="TVM 0.19.0"):
        tpc.load(old)
    arm = tmp_path / "arm.tpc"
    _rewrite(good, arm, manifest_edit=lambda m: m["target"].update(
        name="arm", tvm={"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "generic", "mattr": ["+neon"]}))
    with pytest.raises(ValueError, match="built for aarch64-linux-gnu"):
        tpc.load(arm)
    cuda = tmp_path / "cuda.tpc"
    _rewrite(good, cuda, manifest_edit=lambda m: m["target"].update(name="cuda", family="cuda",
                                                                    tvm={"kind": "cuda", "arch": "sm_90"}))
    if not tpc.resolve_target("cuda").runs_here()[0]:
        with pytest.raises(ValueError, match="no CUDA device"):
            tpc.load(cuda)
    garbage = tmp_path / "garbage.tpc"
    garbage.write_bytes(b"\x00not a tar file" * 100)
    with pytest.raises(ValueError, match="garbage.tpc: not a readable tpc file"):
        tpc.load(garbage)
    truncated = tmp_path / "truncated.tpc"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ValueError):
        tpc.load(truncated)
    with pytest.raises(ValueError, match="does not exist"):
        tpc.load(tmp_path / "missing.tpc")


def test_a_kernel_for_another_machine_refuses_to_run(rng):
    arm = tpc.compile(tpc.presets.get("fc-small").tp, target="arm")
    x1, x2, weight = random_inputs(arm.spec, 2, rng, np.float32)
    with pytest.raises(RuntimeError, match="aarch64"):
        arm(x1, x2, weight)


def _members(path):
    return read_archive(path)


def _write_members(path, members):
    write_archive(path, members)


def test_kernels_with_tables_round_trip_and_tampered_tables_are_refused(tmp_path, rng):
    tp = tpc.presets.get("gaunt-L2").tp
    kernel = tpc.compile(tp, algorithm="grid")
    assert kernel.schedule.algorithm == "grid" and len(kernel.tables) == 5
    path = tmp_path / "grid.tpc"
    kernel.save(path)
    x1, x2, _ = random_inputs(tp, 9, rng, np.float32)
    loaded = tpc.load(path)
    assert [t.shape for t in loaded.tables] == [t.shape for t in kernel.tables]
    np.testing.assert_array_equal(loaded(x1, x2), kernel(x1, x2))
    members = _members(path)
    assert set(members) == {MANIFEST, LIBRARY, TABLES}
    flipped = dict(members)
    flipped[TABLES] = members[TABLES][:-9] + bytes([members[TABLES][-9] ^ 1]) + members[TABLES][-8:]
    _write_members(tmp_path / "flipped.tpc", flipped)
    with pytest.raises(ValueError, match="table checksum"):
        tpc.load(tmp_path / "flipped.tpc")
    _write_members(tmp_path / "missing.tpc", {name: data for name, data in members.items() if name != TABLES})
    with pytest.raises(ValueError, match="missing.tpc: the manifest names table 'tables.npz', which the archive lacks"):
        tpc.load(tmp_path / "missing.tpc")


@pytest.mark.parametrize("given", [None, "1"])
def test_kernels_use_one_worker_per_core_unless_told(given):
    """TVM alone would start half a worker per CPU (it assumes SMT); tpc asks for one per core."""
    env = {key: value for key, value in os.environ.items() if key != "TVM_NUM_THREADS"}
    if given:
        env["TVM_NUM_THREADS"] = given
    script = ("import tvm_ffi, tpc\nfrom tpc.targets import worker_threads\n"
              "print(tvm_ffi.get_global_func('runtime.NumThreads')(), worker_threads())")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    used, per_core = map(int, result.stdout.split())
    assert used == (int(given) if given else per_core)


SMALL = tpc.ChannelwiseTensorProduct("2x0e+2x1o", "0e+1o", 1)


@pytest.mark.parametrize("op", [tpc.Gradient(SMALL, "x1"), tpc.Gradient(SMALL, "weight"),
                                tpc.Fused(SMALL, "gather+scatter")], ids=lambda op: op.description)
def test_gradient_and_fused_kernels_round_trip_through_a_file(op, tmp_path):
    kernel = tpc.compile(op, dtype="float64")
    assert type(kernel) is {"gradient": tpc.GradientKernel, "fused": tpc.ConvolutionKernel}[op.kind]
    path = tmp_path / "kernel.tpc"
    kernel.save(path)
    loaded = tpc.load(path)
    assert type(loaded) is type(kernel) and loaded.op == kernel.op == op and loaded.dtype == "float64"
    assert loaded.schedule == kernel.schedule
    arguments = random_arguments(op, 64, np.random.default_rng(3), "float64", nodes=5)
    np.testing.assert_array_equal(loaded(**arguments), kernel(**arguments))
    assert check(op, loaded, batch=64, nodes=5)
    flipped = tmp_path / "flipped.tpc"
    _rewrite(path, flipped, library_edit=lambda lib: lib[:1000] + bytes([lib[1000] ^ 1]) + lib[1001:])
    with pytest.raises(ValueError, match="checksum"):
        tpc.load(flipped)


def _change_in_place(path, after: bytes, old: bytes, new: bytes) -> None:
    """Replace the first ``old`` after ``after`` in a saved file where it stands, its digest left as it was."""
    data = path.read_bytes()
    start = data.index(old, data.index(after))
    path.write_bytes(data[:start] + new + data[start + len(old):])


def test_a_flipped_digit_in_the_manifest_is_refused_by_the_digest(kernel, tmp_path):
    path = tmp_path / "kernel.tpc"
    kernel.save(path)
    assert json.loads(read_archive(path)[MANIFEST])["spec"]["in1_var"][0] == 1.0
    _change_in_place(path, b'"in1_var"', b"1.0", b"4.0")
    with pytest.raises(ValueError, match="kernel.tpc: digest does not match the contents"):
        tpc.load(path)
    kernel.save(path)
    _change_in_place(path, LIBRARY.encode() + b"\0", b"ELF", b"ELG")
    with pytest.raises(ValueError, match="digest does not match"):
        tpc.load(path)


def test_a_kernel_for_cpu_features_this_machine_lacks_is_refused(kernel, tmp_path):
    path = tmp_path / "kernel.tpc"
    kernel.save(path)
    recorded = json.loads(read_archive(path)[MANIFEST])["target"]["cpu_features"]
    assert recorded == kernel.target.cpu_features() and "sse2" in recorded
    invented = "amx-fp16" if "amx-fp16" not in host_cpu_features() else "invented-feature"
    foreign = tmp_path / "foreign.tpc"
    _rewrite(path, foreign, manifest_edit=lambda m: m["target"]["cpu_features"].append("+" + invented))
    with pytest.raises(ValueError, match=f"foreign.tpc: .*CPU features this machine lacks: {invented}$"):
        tpc.load(foreign)
    unrecorded = tmp_path / "unrecorded.tpc"
    _rewrite(path, unrecorded, manifest_edit=lambda m: m["target"].pop("cpu_features"))
    with pytest.raises(ValueError, match="corrupt manifest .*cpu_features"):
        tpc.load(unrecorded)


def test_a_target_whose_cpu_lacks_features_here_does_not_run():
    generic = tpc.resolve_target({"kind": "llvm", "mcpu": "x86-64"} if host_triple() == "x86_64-linux-gnu" else
                                 {"kind": "llvm", "mcpu": "generic"})
    assert generic.runs_here() == (True, "")
    extra = tpc.resolve_target({**generic.tvm_dict, "mattr": ["+avx512fp16"]})
    if "avx512fp16" not in host_cpu_features() and host_triple() == "x86_64-linux-gnu":
        runs, why = extra.runs_here()  # avx512fp16 implies the AVX-512 features it builds on
        assert not runs and why.startswith("it was built for CPU features this machine lacks: ") and "avx512fp16" in why


def test_read_only_inputs_are_accepted_and_a_read_only_out_is_refused(kernel, tmp_path, rng):
    x1, x2, weight = random_inputs(TP, 5, rng, np.float32)
    expected = kernel(x1, x2, weight)
    np.save(tmp_path / "x1.npy", x1)
    mapped = np.load(tmp_path / "x1.npy", mmap_mode="r")
    frozen = [x2.copy(), weight.copy()]
    for array in frozen:
        array.setflags(write=False)
    assert not mapped.flags.writeable
    np.testing.assert_array_equal(kernel(mapped, *frozen), expected)
    np.testing.assert_array_equal(mapped, x1)
    empty = np.empty((0, TP.irreps_in1.dim), np.float32)
    empty.setflags(write=False)
    assert kernel(empty, x2[:0], weight[:0]).shape == (0, TP.irreps_out.dim)
    out = np.empty_like(expected)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="out is read-only"):
        kernel(x1, x2, weight, out=out)

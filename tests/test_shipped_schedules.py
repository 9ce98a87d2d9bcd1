"""The schedules shipped in the package: readable, valid, and used where they apply; the script that
writes them."""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import tpc
from tpc import cache
from tpc.records import Record, read_records
from tpc.schedule import search_space
from tpc.tune.graph import UNFUSED_AND_FUSED

SHIPPED = cache.PACKAGED_SCHEDULES
ROOT = Path(__file__).resolve().parent.parent
REAL_MODEL_PRESETS = {"mace-conv-0e", "mace-conv-0e1o", "mace-conv-0e1o2e", "nequip-default"}
CONTRACTION_GRADIENTS = ("", "x", "weight")
COVERAGE = {
    "x86-znver1": "presets but the real-model ones, graph",
    "x86-znver4": "presets but the real-model ones, graph",
}
"""What each shipped x86 file holds, where that is not everything (see tpc/schedules/README.md):
the files tuned before the real-model and product-basis presets existed lack them. A new file
holds everything ("everything but NAME, ...": all but those product bases)."""


def _contraction_ops(names: list[str]) -> dict[str, tuple[str, str]]:
    """fingerprint -> (product-basis preset, schedule key) of the shipped kinds of contraction op of ``names``."""
    ops = {}
    for name in names:
        spec = tpc.presets.get_contraction(name).spec
        ops.update({op.fingerprint: (name, op.schedule_key) for op in
                    (tpc.Contraction(spec, wrt) for wrt in CONTRACTION_GRADIENTS)})
    return ops


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("x86-*.jsonl")), ids=lambda path: path.stem)
def test_each_shipped_x86_target_covers_what_it_should(path):
    ops = {record.op for record in read_records(path) if record.ok}
    coverage = COVERAGE.get(path.stem, "everything")
    everything = coverage.startswith("everything")
    presets = set(tpc.presets.names()) - (REAL_MODEL_PRESETS if coverage.startswith("presets but") else set())
    lacking = coverage.removeprefix("everything but ").split(", ")
    contractions = [name for name in tpc.presets.contraction_names() if name not in lacking] if everything else []
    for name in sorted(presets):
        assert tpc.presets.get(name).tp.fingerprint in ops, f"{path.name}: no shipped schedule for {name}"
    if everything or coverage.endswith("graph"):
        graph = tpc.presets.get_graph("mace-interaction-l2")
        for cut in UNFUSED_AND_FUSED:
            for task in tpc.tune.graph_tasks(graph.graph, graph.sizes, cut):
                assert task.op.fingerprint in ops, f"{path.name}: no shipped schedule for {task.label} of {graph.name}"
    for fingerprint, (name, key) in _contraction_ops(contractions).items():
        assert fingerprint in ops, f"{path.name}: no shipped schedule for {key} of {name}"


def test_shipped_records_are_valid():
    records = [record for path in SHIPPED.glob("*.jsonl") for record in read_records(path)]
    graph = tpc.presets.get_graph("mace-interaction-l2")
    op_kinds = {tp.fingerprint: None for tp in (tpc.presets.get(name).tp for name in tpc.presets.names())}
    op_kinds.update({task.op.fingerprint: task.fusion for cut in UNFUSED_AND_FUSED
                     for task in tpc.tune.graph_tasks(graph.graph, graph.sizes, cut)})
    op_kinds.update({fingerprint: key for fingerprint, (_, key)
                     in _contraction_ops(tpc.presets.contraction_names()).items()})
    for record in records:
        space = search_space(tpc.resolve_target(record.target).family, record.algorithm, op_kinds[record.op])
        assert space.validate(record.config) == record.config and record.space_version == space.version


def test_compile_uses_a_shipped_schedule_when_the_target_matches(monkeypatch):
    monkeypatch.setattr(cache, "SHIPPED_DIR", SHIPPED)
    tp = tpc.presets.get("fc-small").tp
    host = tpc.resolve_target("host")
    matching = [r for path in SHIPPED.glob("*.jsonl") for r in read_records(path)
                if r.ok and r.op == tp.fingerprint and r.target_fingerprint == host.fingerprint]
    if not matching:
        pytest.skip(f"the shipped schedules were tuned for another CPU than this one ({host.tvm_dict})")
    kernel = tpc.compile(tp, batch=1000)
    assert kernel.schedule.source == "shipped"
    assert kernel.schedule.config == min(matching, key=lambda r: r.seconds).config


def test_compile_for_cuda_uses_the_shipped_gpu_schedule(monkeypatch):
    """CUDA kernels compile without a GPU, so the GPU's shipped records are checked here too."""
    monkeypatch.setattr(cache, "SHIPPED_DIR", SHIPPED)
    tp = tpc.presets.get("fc-small").tp
    target = tpc.resolve_target("cuda:sm_90")
    matching = [r for r in read_records(SHIPPED / "cuda-sm_90.jsonl")
                if r.ok and r.op == tp.fingerprint and r.target_fingerprint == target.fingerprint]
    kernel = tpc.compile(tp, batch=1000, target=target)
    assert kernel.schedule.source == "shipped"
    assert kernel.schedule.config == min(matching, key=lambda r: r.seconds).config


def test_the_interaction_block_finds_its_shipped_fused_schedule(monkeypatch):
    monkeypatch.setattr(cache, "SHIPPED_DIR", SHIPPED)
    graph = tpc.presets.get_graph("mace-interaction-l2")
    (task,) = tpc.tune.graph_tasks(graph.graph, graph.sizes)
    host = tpc.resolve_target("host")
    matching = [r for path in SHIPPED.glob("*.jsonl") for r in read_records(path)
                if r.ok and r.op == task.op.fingerprint and r.target_fingerprint == host.fingerprint]
    if not matching:
        pytest.skip(f"the shipped schedules were tuned for another CPU than this one ({host.tvm_dict})")
    kernel = tpc.build.compile_convolution(task.tp, task.fusion, edges=graph.sizes["edges"])
    assert kernel.schedule.source == "shipped"
    assert kernel.schedule.config == min(matching, key=lambda r: r.seconds).config


def test_a_product_basis_compiles_with_its_shipped_schedule(monkeypatch):
    monkeypatch.setattr(cache, "SHIPPED_DIR", SHIPPED)
    preset = tpc.presets.get_contraction("mace-product-0e")
    op = tpc.Contraction(preset.spec)
    host = tpc.resolve_target("host")
    matching = [r for path in SHIPPED.glob("*.jsonl") for r in read_records(path)
                if r.ok and r.op == op.fingerprint and r.target_fingerprint == host.fingerprint]
    if not matching:
        pytest.skip(f"no product-basis schedule was shipped for this CPU ({host.tvm_dict})")
    kernel = tpc.compile(op)
    assert kernel.schedule.source == "shipped"
    assert kernel.schedule.config == min(matching, key=lambda r: r.seconds).config


def test_the_tuning_script_writes_a_file_this_machine_then_compiles_with(tmp_path, monkeypatch):
    """The documented one command (README, "Tuned schedules for your machine"), kept short here."""
    output = tmp_path / "shipped" / "x86-mine.jsonl"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "tune_shipped_schedules.py"), "--presets",
                             "fc-small", "--contraction-presets", "--graph-presets", "--trials", "2", "--output",
                             str(output)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "TPC_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote 2 new records to {output}" in result.stdout
    host = tpc.resolve_target("host")
    records = read_records(output)
    assert len(records) == 2 and {r.target_fingerprint for r in records} == {host.fingerprint}
    assert not (tmp_path / "cache" / "schedules.jsonl").exists()  # the user's cache is left alone
    monkeypatch.setattr(cache, "SHIPPED_DIR", output.parent)
    preset = tpc.presets.get("fc-small")
    kernel = tpc.compile(preset.tp, batch=preset.batch)
    assert kernel.schedule.source == "shipped"
    assert kernel.schedule.config == min(records, key=lambda r: r.seconds).config


def test_the_tuning_script_replaces_each_tuned_ops_records_as_it_goes(tmp_path):
    """Each op's records are merged into the file as soon as it is tuned: a later op's crash or a
    kill loses only the op in flight, and a rerun replaces the records of the ops it tunes again."""
    script = runpy.run_path(str(ROOT / "scripts" / "tune_shipped_schedules.py"))
    host = tpc.resolve_target("host")

    def record(op, seconds, error=None):
        return Record(op, 64, "float32", host.tvm_dict, host.fingerprint, 1, "cg", {}, seconds, error)

    output = tmp_path / "x86-mine.jsonl"
    assert script["merge_records"](output, [record("a", 1.0), record("b", 2.0)]) == 2
    assert script["merge_records"](output, [record("a", 0.5), record("a", None, "build failed")]) == 1
    assert script["merge_records"](output, [record("c", None, "build failed")]) == 0
    assert sorted((r.op, r.seconds) for r in read_records(output)) == [("a", 0.5), ("b", 2.0)]
    assert not output.with_suffix(".partial").exists()

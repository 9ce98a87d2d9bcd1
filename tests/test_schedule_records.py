"""Records written before ops became values are found by the compile path: the shipped
schedules, and lines of an old tuning log (product, gradient and fused ops) in the user cache."""

import json
from pathlib import Path

import pytest

import tpc
from tpc import cache
from tpc.build import CacheKey, choose_schedule
from tpc.ops import Contraction, Fused, Gradient, Product
from tpc.records import Record, read_records
from tpc.schedule import search_space, validate_config
from tpc.tune.graph import graph_tasks

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = cache.PACKAGED_SCHEDULES
OLD_LOG = ROOT / "tuning_logs" / "mace-l2-host-float32-b10000.jsonl"
PRE_OP_LOG = Path(__file__).resolve().parent / "data" / "pre_op_tuning_log.jsonl"
"""Written by ``tpc.tune`` before ops were values (product, gradient x1 and fused gather+scatter of
``PRE_OP_SPEC``, two trials each, batch 256), with the knob spaces of today."""
PRE_OP_SPEC = tpc.ChannelwiseTensorProduct("4x0e+4x1o", "0e+1o", 1)
MACE = tpc.presets.get("mace-l2").tp


def _shipped_ops():
    interaction = tpc.presets.get_graph("mace-interaction-l2")
    (fused,) = graph_tasks(interaction.graph, interaction.sizes)
    return [pytest.param(Product(MACE), 10000, id="mace-l2"),
            pytest.param(Product(tpc.presets.get("fc-small").tp), 1000, id="fc-small"),
            pytest.param(fused.op, fused.batch, id="mace-interaction-l2-fused"),
            pytest.param(Contraction(tpc.presets.get_contraction("mace-product-0e").spec), 243,
                         id="mace-product-0e")]


def _absent_as_documented(path, op) -> bool:
    """Whether tpc/schedules/README.md says ``path`` holds no records of such an op: only the
    rocketlake file has product bases, and the GPU file has no fused (CPU) kernels."""
    if isinstance(op, Contraction):
        return path.stem != "x86-rocketlake"
    return path.stem.startswith("cuda") and isinstance(op, Fused)


def _fastest(path, op, dtype, target, algorithm=None):
    records = [r for r in read_records(path) if r.ok and r.op == op.fingerprint and r.dtype == dtype
               and r.target_fingerprint == target.fingerprint and algorithm in (None, r.algorithm)]
    return min(records, key=lambda r: r.seconds) if records else None


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.jsonl")), ids=lambda path: path.stem)
@pytest.mark.parametrize("op,batch", _shipped_ops())
def test_shipped_records_are_found_for_the_op_on_their_target(monkeypatch, path, op, batch):
    monkeypatch.setattr(cache, "SHIPPED_DIR", SHIPPED)
    target = tpc.resolve_target(read_records(path)[0].target)
    best = _fastest(path, op, "float32", target)
    if best is None:
        assert _absent_as_documented(path, op), f"{path.name} has no record of {op.description}"
        return
    assert cache.batch_bucket(best.batch) == cache.batch_bucket(batch)
    choice = choose_schedule(CacheKey(op, batch, "float32", target), None)
    assert (choice.source, choice.algorithm, choice.config) == ("shipped", best.algorithm, best.config)
    # Another core count (another GPU) is served by the same record, which names where it was tuned.
    other, source = (tpc.resolve_target({**target.tvm_dict, "num-cores": 64}),
                     f"shipped, tuned on {target.tvm_dict['mcpu']} with {target.tvm_dict['num-cores']} cores") \
        if target.family == "cpu" else (tpc.resolve_target("cuda:sm_80"), "shipped, tuned on sm_90")
    choice = choose_schedule(CacheKey(op, batch, "float32", other), None)
    assert (choice.source, choice.algorithm, choice.config) == (source, best.algorithm, best.config)
    assert choose_schedule(CacheKey(op, batch, "float64", other), None).source == "default"


def test_a_shipped_record_of_one_algorithm_is_found_when_that_algorithm_is_asked(monkeypatch):
    monkeypatch.setattr(cache, "SHIPPED_DIR", SHIPPED)
    op = Product(tpc.presets.get("gaunt-L3").tp)
    path = SHIPPED / "x86-znver4.jsonl"
    target = tpc.resolve_target(read_records(path)[0].target)
    for algorithm in op.algorithms:
        best = _fastest(path, op, "float32", target, algorithm)
        choice = choose_schedule(CacheKey(op, 10000, "float32", target), None, algorithm)
        assert (choice.source, choice.algorithm, choice.config) == ("shipped", algorithm, best.config)


def _old_lines():
    """The old log's lines as written (before ops were values): dicts of the record format."""
    return [json.loads(line) for line in OLD_LOG.read_text().splitlines() if line.strip()]


def _write_user_cache(tmp_path, monkeypatch, lines):
    monkeypatch.setenv("TPC_CACHE", str(tmp_path))
    (tmp_path / "schedules.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert cache.user_cache_file() == tmp_path / "schedules.jsonl"


def test_the_old_log_predates_the_op_values():
    lines = _old_lines()
    assert len(lines) > 1 and {line["op"] for line in lines} == {Product(MACE).fingerprint}
    assert all("wrt" not in line and "fusion" not in line and isinstance(line["op"], str) for line in lines)


def test_an_old_tuning_log_line_in_the_user_cache_is_found_by_the_compile_path(tmp_path, monkeypatch):
    lines = _old_lines()
    target = tpc.resolve_target(lines[0]["target"])
    assert target.fingerprint == lines[0]["target_fingerprint"]
    key = CacheKey(Product(MACE), lines[0]["batch"], "float32", target)
    # As written, its knob space is an older version than today's: stale, so not used.
    _write_user_cache(tmp_path, monkeypatch, lines[:1])
    assert lines[0]["space_version"] < search_space("cpu").version
    assert choose_schedule(key, None).source == "default"
    # The same lines at today's knob-space version: the fastest one is used.
    current = [{**line, "space_version": search_space("cpu").version} for line in lines]
    _write_user_cache(tmp_path, monkeypatch, current)
    fastest = min((line for line in current if line["error"] is None), key=lambda line: line["seconds"])
    choice = choose_schedule(key, None)
    assert choice.source == "user cache" and choice.algorithm == fastest["algorithm"]
    assert choice.config == validate_config("cpu", fastest["config"], "cg", None)
    # The user cache answers before the shipped schedules, which hold mace-l2 on this target too.
    monkeypatch.setattr(cache, "SHIPPED_DIR", SHIPPED)
    assert _fastest(SHIPPED / "x86-znver4.jsonl", key.op, "float32", target) is not None
    assert choose_schedule(key, None).source == "user cache"
    kernel = tpc.compile(MACE, batch=key.batch, target=target)
    assert kernel.schedule.source == "user cache" and kernel.schedule.config == choice.config


def _hand_written(line, op, config):
    """An old-format line for ``op``: the record format has only the op's fingerprint."""
    space = search_space("cpu", "cg", op.schedule_key)
    record = {**line, "op": op.fingerprint, "config": space.validate(config), "space_version": space.version}
    Record.from_dict(record)  # still a valid record
    return record


@pytest.mark.parametrize("op,config", [
    pytest.param(Gradient(MACE, "x1"), {"batch_tile": 4, "unroll_components": False}, id="gradient-x1"),
    pytest.param(Gradient(MACE, "weight"), {"batch_tile": 2, "inline_z": True}, id="gradient-weight"),
    pytest.param(Fused(MACE, "gather+scatter"), {"receiver_tile": 1}, id="fused-gather+scatter"),
])
def test_old_format_gradient_and_fused_records_are_found_for_their_op_only(tmp_path, monkeypatch, op, config):
    line = _old_lines()[0]
    target = tpc.resolve_target(line["target"])
    assert not any(line["op"] == op.fingerprint for line in _old_lines())  # no such record in the log: by hand
    record = _hand_written(line, op, config)
    assert record["config"] != search_space("cpu", "cg", op.schedule_key).default()
    _write_user_cache(tmp_path, monkeypatch, [record])
    choice = choose_schedule(CacheKey(op, line["batch"], "float32", target), None)
    assert (choice.source, choice.algorithm, choice.config) == ("user cache", "cg", record["config"])
    for other in (Product(MACE), Gradient(MACE, "x2"), Fused(MACE, "gather")):
        assert choose_schedule(CacheKey(other, line["batch"], "float32", target), None).source == "default"


@pytest.mark.parametrize("op", [Product(PRE_OP_SPEC), Gradient(PRE_OP_SPEC, "x1"),
                                Fused(PRE_OP_SPEC, "gather+scatter")], ids=lambda op: op.kind)
def test_a_log_written_before_op_values_feeds_the_compile_path(tmp_path, monkeypatch, op):
    lines = [json.loads(line) for line in PRE_OP_LOG.read_text().splitlines()]
    assert all("wrt" not in line and "fusion" not in line for line in lines)
    mine = [line for line in lines if line["op"] == op.fingerprint and line["error"] is None]
    assert mine, f"the log has no record of {op.description}"
    fastest = min(mine, key=lambda line: line["seconds"])
    target = tpc.resolve_target(fastest["target"])
    _write_user_cache(tmp_path, monkeypatch, lines)
    choice = choose_schedule(CacheKey(op, fastest["batch"], fastest["dtype"], target), None)
    assert (choice.source, choice.algorithm) == ("user cache", fastest["algorithm"])
    assert choice.config == validate_config("cpu", fastest["config"], fastest["algorithm"], op.schedule_key)
    if target.runs_here()[0]:
        kernel = tpc.compile(op, batch=fastest["batch"], target=target, dtype=fastest["dtype"])
        assert kernel.schedule == choice and kernel.op == op

"""Schedules tuned on one CPU serve its kin: the same CPU with other cores, the same vector ISA,
the same architecture; never another architecture; the source names where it was tuned; a
kindred schedule that does not fit or does not build gives way."""

import re

import numpy as np
import pytest

import tpc
from tpc import cache
from tpc.build import CacheKey, choose_schedule
from tpc.ops import Product
from tpc.records import Record, append_records, read_records
from tpc.schedule import search_space
from tpc.targets import EXACT, SAME_ARCH, SAME_CPU, SAME_ISA, feature_similarity, kinship, vector_isa
from tpc.verify import random_inputs, relative_error, tolerance

TP = tpc.presets.get("fc-small").tp
SPACE = search_space("cpu")
X86 = "x86_64-linux-gnu"


def cpu(mcpu, cores=2, **options):
    return {"kind": "llvm", "mtriple": X86, "mcpu": mcpu, "num-cores": cores, **options}


ARM = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-n1", "mattr": ["+neon"], "num-cores": 4}


def _record(target, tile, seconds=0.01, batch=1000, op=TP):
    spec = tpc.resolve_target(target)
    return Record(op.fingerprint, batch, "float32", spec.tvm_dict, spec.fingerprint, SPACE.version, "cg",
                  {**SPACE.default(), "batch_tile": tile}, seconds, None, "xgb", 0)


def _choice(target, batch=1000):
    return choose_schedule(CacheKey(Product(TP), batch, "float32", tpc.resolve_target(target)), None)


def test_kinship_of_targets():
    assert kinship(cpu("znver4"), cpu("znver4")) == EXACT
    assert kinship(cpu("znver4", 16), cpu("znver4", 2)) == SAME_CPU
    assert kinship(cpu("znver5", 16), cpu("znver4")) == SAME_ISA  # AVX-512 and AVX-512
    assert kinship(cpu("sapphirerapids"), cpu("znver4")) == SAME_ISA
    assert kinship(cpu("znver3"), cpu("haswell")) == SAME_ISA  # AVX2 and AVX2
    assert kinship(cpu("znver3"), cpu("znver4")) == SAME_ARCH
    assert kinship({**ARM, "mcpu": "apple-m1"}, ARM) == SAME_ISA  # NEON and NEON
    assert kinship(cpu("znver3"), ARM) is None and kinship(ARM, cpu("znver3")) is None
    assert kinship({"kind": "cuda", "arch": "sm_90"}, {"kind": "cuda", "arch": "sm_90"}) == EXACT
    assert kinship({"kind": "cuda", "arch": "sm_89"}, {"kind": "cuda", "arch": "sm_80"}) == SAME_ISA
    assert kinship({"kind": "cuda", "arch": "sm_80"}, {"kind": "cuda", "arch": "sm_90"}) == SAME_ARCH
    assert kinship(cpu("znver3"), {"kind": "cuda", "arch": "sm_90"}) is None
    assert kinship(cpu("znver3"), {"kind": "no-such-kind"}) is None
    assert [vector_isa(cpu(name)).isa for name in ("znver4", "znver3", "x86-64")] == ["avx512", "avx2", "sse"]
    assert (vector_isa(ARM).isa, vector_isa(ARM).vector_bits) == ("neon", 128)


def test_the_nearest_kin_answers_and_the_source_names_it(isolated):
    shipped = isolated / "shipped"
    assert _choice(cpu("znver5", 16)).source == "default"
    append_records(shipped / "arm.jsonl", [_record(ARM, 1, 1e-6)])  # fastest, but another architecture
    append_records(shipped / "cuda.jsonl", [Record(TP.fingerprint, 1000, "float32", {"kind": "cuda", "arch": "sm_90"},
                                                   "cuda-fp", 2, "cg", {}, 1e-6)])
    assert _choice(cpu("znver5", 16)).source == "default"
    append_records(shipped / "x86-znver3.jsonl", [_record(cpu("znver3"), 1)])
    assert _choice(cpu("znver5", 16)).source == "shipped, tuned on znver3"  # any x86 CPU
    append_records(shipped / "x86-sapphirerapids.jsonl", [_record(cpu("sapphirerapids"), 2)])
    append_records(shipped / "x86-znver4.jsonl", [_record(cpu("znver4"), 4, 0.02)])
    choice = _choice(cpu("znver5", 16))  # both AVX-512: znver4 shares more features than sapphirerapids
    assert (choice.source, choice.config["batch_tile"]) == ("shipped, tuned on znver4", 4)
    append_records(shipped / "x86-znver5.jsonl", [_record(cpu("znver5", 2), 16, 0.05)])
    choice = _choice(cpu("znver5", 16))
    assert (choice.source, choice.config["batch_tile"]) == ("shipped, tuned on znver5 with 2 cores", 16)
    append_records(shipped / "x86-znver5.jsonl", [_record(cpu("znver5", 16), 32, 0.09, batch=16384)])
    assert _choice(cpu("znver5", 16)) == tpc.runtime.ScheduleChoice(
        "cg", {**SPACE.default(), "batch_tile": 32}, "shipped")  # the exact target, at another batch
    cache.add_records([_record(cpu("znver4"), 64)])
    assert _choice(cpu("znver5", 16)).source == "shipped"  # the exact target before a kindred user record
    assert _choice(cpu("sapphirerapids", 4)).source == "shipped, tuned on sapphirerapids with 2 cores"
    assert _choice(cpu("znver4", 2)).source == "user cache"  # the user cache first for the same target
    assert _choice(cpu("haswell")).source == "shipped, tuned on znver3"
    assert _choice(ARM).source == "shipped"
    assert _choice({**ARM, "mcpu": "neoverse-v1", "mattr": []}).source == "shipped, tuned on neoverse-n1 +neon"
    # A target fingerprint asks for that exact target only.
    versions = {"cg": SPACE.version}
    spec = tpc.resolve_target(cpu("znver5", 8))
    assert cache.lookup(TP.fingerprint, 1000, "float32", spec.fingerprint, versions) is None
    assert cache.lookup(TP.fingerprint, 1000, "float32", spec, versions).kinship == SAME_CPU


def test_a_kindred_record_that_does_not_fit_is_skipped_for_the_next(isolated):
    path = isolated / "shipped" / "x86.jsonl"
    good, bad = _record(cpu("znver1"), 4, 0.02), _record(cpu("znver1"), 16, 0.01)  # the faster one bad
    bad = Record(**{**bad.__dict__, "config": {**bad.config, "batch_tile": 7777}})
    append_records(path, [good, bad])
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))}:2: .*'batch_tile' = 7777"):
        choice = _choice(cpu("znver3", 12))
    assert (choice.source, choice.config["batch_tile"]) == ("shipped, tuned on znver1", 4)


def test_a_cached_schedule_that_does_not_build_gives_way_to_the_default(isolated, monkeypatch):
    append_records(isolated / "shipped" / "x86.jsonl", [_record(cpu("znver1"), 4)])
    built = tpc.build.build

    def build(request):
        if request.choice.source != "default":
            raise RuntimeError("LLVM ERROR: cannot select")
        return built(request)

    monkeypatch.setattr(tpc.build, "build", build)
    with pytest.warns(UserWarning, match="with the schedule from shipped, tuned on znver1 .*LLVM ERROR.*default"):
        kernel = tpc.compile(TP, batch=1000, target=cpu("znver3"))
    assert kernel.schedule.source == "default" and kernel.schedule.config == SPACE.default()


def test_foreign_and_corrupt_lines_in_a_shipped_file_are_skipped_with_file_and_line(isolated):
    path = isolated / "shipped" / "x86.jsonl"
    path.parent.mkdir()
    good = _record(cpu("znver1"), 4)
    path.write_text("\n".join([
        "not json at all",
        '{"format": "someone-elses/1", "op": "x"}',
        good.to_json()[:40],
        good.to_json().replace('"batch":1000', '"batch":"many"'),
        good.to_json(),
        Record(**{**good.__dict__, "target": {"kind": "llvm", "num-cores": "many"}, "target_fingerprint": "x",
                  "seconds": 1e-6}).to_json(),  # well formed, faster, for a target TVM rejects: no kin
    ]) + "\n")
    with pytest.warns(UserWarning) as caught:
        choice = _choice(cpu("znver3"))
    assert choice.source == "shipped, tuned on znver1" and choice.config["batch_tile"] == 4
    lines = {int(match.group(1)) for warning in caught
             for match in [re.match(rf"{re.escape(str(path))}:(\d+): skipping", str(warning.message))] if match}
    assert lines == {1, 2, 3, 4}


def _avx512_host():
    return "avx512f" in tpc.targets.host_cpu_features()


# x86-64-v4 (AVX-512 F, BW, CD, DQ, VL and nothing newer) runs on every AVX-512 host, where a named
# CPU such as sapphirerapids asks for features (AMX, ENQCMD...) that other AVX-512 CPUs lack.
@pytest.mark.parametrize("mcpu", ["x86-64-v4", "haswell"])
def test_a_cpu_absent_from_the_shipped_files_builds_runs_and_reports_its_kin(monkeypatch, mcpu):
    """Acceptance: another mcpu and another core count than any shipped file, of the same vector ISA
    as some of them: the kernel reports the schedule of the kin sharing most features with it (its
    fastest), builds, and runs where the CPU can."""
    monkeypatch.setattr(cache, "SHIPPED_DIR", cache.PACKAGED_SCHEDULES)
    preset = tpc.presets.get("mace-l2")
    target = cpu(mcpu, 7)
    records = [r for path in cache.PACKAGED_SCHEDULES.glob("x86-*.jsonl") for r in read_records(path)
               if r.ok and r.op == preset.tp.fingerprint and r.dtype == "float32" and r.batch == preset.batch
               and kinship(target, r.target) == SAME_ISA]
    assert records, f"no shipped file is kin to {mcpu}"
    best = min(records, key=lambda r: (-feature_similarity(target, r.target), r.seconds))
    kernel = tpc.compile(preset.tp, batch=preset.batch, target=target)
    assert kernel.schedule.source == f"shipped, tuned on {best.target['mcpu']}"
    assert (kernel.schedule.algorithm, kernel.schedule.config) == (best.algorithm, best.config)
    if vector_isa(target).isa == "avx512" and not _avx512_host():
        assert not kernel.target.runs_here()[0]
        return
    x1, x2, weight = random_inputs(preset.tp, 33, np.random.default_rng(0), np.float32)
    assert relative_error(kernel(x1, x2, weight), preset.tp.reference(x1, x2, weight)) < tolerance("float32")

import subprocess
import sys

import tpc
from tpc import cache
from tpc.records import Record, append_records
from tpc.schedule import search_space

TP = tpc.presets.get("fc-small").tp


def _record(batch, seconds, tile, target="host", dtype="float32"):
    spec = tpc.resolve_target(target)
    config = {**search_space("cpu").default(), "batch_tile": tile}
    return Record(TP.fingerprint, batch, dtype, spec.tvm_dict, spec.fingerprint, search_space("cpu").version, "cg",
                  config, seconds, None, "xgb", 0)


def test_bucket():
    assert [cache.batch_bucket(b) for b in (1, 2, 3, 1000, 1024, 10000)] == [1, 2, 4, 1024, 1024, 16384]


def test_best_record_nearest_batch_and_sources(isolated):
    fp = tpc.resolve_target("host").fingerprint
    version = {"cg": search_space("cpu").version}
    assert cache.lookup(TP.fingerprint, 1000, "float32", fp, version) is None
    append_records(isolated / "shipped" / "x86.jsonl", [_record(1000, 0.5, 2)])
    hit = cache.lookup(TP.fingerprint, 1000, "float32", fp, version)
    assert hit.source == "shipped" and hit.record.config["batch_tile"] == 2
    cache.add_records([_record(1000, 0.3, 4), _record(1000, 0.2, 16), _record(8192, 0.1, 32), _record(1000, 0.25, 1),
                       _record(1000, None, 64)])
    hit = cache.lookup(TP.fingerprint, 900, "float32", fp, version)
    assert hit.source == "user cache" and hit.record.config["batch_tile"] == 16
    assert cache.lookup(TP.fingerprint, 7000, "float32", fp, version).record.config["batch_tile"] == 32
    assert cache.lookup(TP.fingerprint, 1000, "float64", fp, version) is None
    assert cache.lookup(TP.fingerprint, 1000, "float32", "other-target", version) is None
    assert cache.lookup(TP.fingerprint, 1000, "float32", fp, {"cg": version["cg"] - 1}) is None
    assert cache.lookup(TP.fingerprint, 1000, "float32", fp, {"grid": version["cg"]}) is None


def test_compile_uses_the_cache_in_a_fresh_process(isolated):
    cache.add_records([_record(1000, 0.2, 16)])
    assert tpc.compile(TP, batch=1000).schedule.source == "user cache"
    assert tpc.compile(TP, batch=1000, schedule="default").schedule.source == "default"
    script = ("import tpc; k = tpc.compile(tpc.presets.get('fc-small').tp, batch=1000); "
              "print(k.schedule.source, k.schedule.config['batch_tile'])")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["user", "cache", "16"], result.stderr

import json
import re
import subprocess
import sys
import threading
import time

import pytest

import tpc
from tpc import cache
from tpc.build import CacheKey, choose_schedule
from tpc.files import write_bytes
from tpc.ops import Product
from tpc.records import Record, append_records, read_numbered_records, read_records
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


def _bad_lines(good):
    """One JSON line per kind of bad record, each faster than ``good`` so that it would win."""
    fields = json.loads(good.to_json())
    bad = {
        "unknown knob value": {"config": {**good.config, "batch_tile": 7777}},
        "unknown knob": {"config": {**good.config, "no_such_knob": 1}},
        "non-dict config": {"config": "batch_tile=4"},
        "string batch": {"batch": "1000"},
        "negative batch": {"batch": -5},
        "string seconds": {"seconds": "fast"},
    }
    return {kind: json.dumps({**fields, **change, "seconds": change.get("seconds", 0.01)})
            for kind, change in bad.items()}


BAD_KINDS = list(_bad_lines(_record(1000, 0.2, 16)))


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_a_bad_record_next_to_a_good_one_is_skipped_with_its_file_and_line(isolated, kind):
    good = _record(1000, 0.2, 16)
    path = cache.user_cache_file()
    path.parent.mkdir(parents=True)
    path.write_text(good.to_json() + "\n" + _bad_lines(good)[kind] + "\n")
    key = CacheKey(Product(TP), 1000, "float32", tpc.resolve_target("host"))
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))}:2: skipping cached schedule record") as caught:
        choice = choose_schedule(key, None)
    assert choice.source == "user cache" and choice.config["batch_tile"] == 16
    assert all(f"{path}:1:" not in str(warning.message) for warning in caught)


def test_every_bad_record_skipped_falls_back_to_the_shipped_schedules(isolated):
    good = _record(1000, 0.5, 2)
    append_records(isolated / "shipped" / "x86.jsonl", [good])
    path = cache.user_cache_file()
    path.parent.mkdir(parents=True)
    path.write_text("".join(line + "\n" for line in _bad_lines(_record(1000, 0.2, 16)).values()))
    key = CacheKey(Product(TP), 1000, "float32", tpc.resolve_target("host"))
    with pytest.warns(UserWarning) as caught:
        choice = choose_schedule(key, None)
    assert choice.source == "shipped" and choice.config["batch_tile"] == 2
    lines = {int(match.group(1)) for warning in caught
             for match in [re.search(rf"{re.escape(str(path))}:(\d+): skipping", str(warning.message))] if match}
    assert lines == set(range(1, len(BAD_KINDS) + 1))


def test_compile_takes_the_good_record_beside_a_bad_one(isolated):
    good = _record(1000, 0.2, 16)
    path = cache.user_cache_file()
    path.parent.mkdir(parents=True)
    path.write_text(_bad_lines(good)["unknown knob value"] + "\n" + good.to_json() + "\n")
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))}:1: .*'batch_tile' = 7777"):
        kernel = tpc.compile(TP, batch=1000)
    assert kernel.schedule.source == "user cache" and kernel.schedule.config["batch_tile"] == 16


def test_each_file_is_parsed_once_until_it_changes(isolated, monkeypatch):
    parsed = []
    monkeypatch.setattr(cache, "read_numbered_records",
                        lambda path, **kwargs: parsed.append(path) or read_numbered_records(path, **kwargs))
    path = cache.user_cache_file()
    fp, version = tpc.resolve_target("host").fingerprint, {"cg": search_space("cpu").version}
    cache.add_records([_record(1000, 0.2, 16)])
    for _ in range(3):
        assert cache.lookup(TP.fingerprint, 1000, "float32", fp, version).record.config["batch_tile"] == 16
    assert parsed == [path]
    cache.add_records([_record(1000, 0.1, 4)])  # appended: another size
    assert cache.lookup(TP.fingerprint, 1000, "float32", fp, version).record.config["batch_tile"] == 4
    write_bytes(path, path.read_bytes())  # rewritten with the same size: another inode
    cache.lookup(TP.fingerprint, 1000, "float32", fp, version)
    assert parsed == [path] * 3
    with open(path, "a") as stream:
        stream.write("not a record\n")
    for _ in range(2):  # parsed once more, and each lookup warns again
        with pytest.warns(UserWarning, match=rf"{re.escape(str(path))}:3: skipping unreadable"):
            cache.lookup(TP.fingerprint, 1000, "float32", fp, version)
    assert parsed == [path] * 4


def _prunable(path):
    """A cache file: one key with five configurations (one measured twice), another key, a record of
    a stale knob space, a failed one, a cut line; the fastest configurations known by their tiles."""
    key = [_record(1000, seconds, tile) for seconds, tile in ((0.5, 1), (0.2, 2), (0.3, 4), (0.4, 8), (0.25, 16))]
    key.append(_record(1024, 0.45, 2))  # the same bucket and configuration, slower
    other = [_record(8192, 0.1, 32), _record(8192, 0.2, 64)]
    stale = Record(**{**_record(1000, 0.01, 1).__dict__, "space_version": 0})
    failed = Record(**{**_record(1000, None, 2).__dict__, "error": "build failed"})
    append_records(path, key + [stale, failed] + other)
    with open(path, "a") as stream:
        stream.write('{"format": "tpc.Record/1", "op": \n')
    return path.read_text().splitlines()


def test_prune_keeps_the_fastest_configurations_per_key(isolated):
    path = cache.user_cache_file()
    lines = _prunable(path)
    path.chmod(0o640)
    report = cache.prune(keep=2, dry_run=True)
    assert (report.kept, report.slower, report.stale, report.unreadable) == (4, 4, 2, 1)
    assert path.read_text().splitlines() == lines
    assert cache.prune(keep=2) == report and "kept 4 of 11 lines" in report.summary()
    assert path.read_text().splitlines() == [lines[1], lines[4], lines[8], lines[9]]  # as written, in order
    assert path.stat().st_mode & 0o777 == 0o640
    fp, version = tpc.resolve_target("host").fingerprint, {"cg": search_space("cpu").version}
    assert cache.lookup(TP.fingerprint, 1000, "float32", fp, version).record.config["batch_tile"] == 2
    assert cache.prune(keep=2).dropped == 0 and cache.prune(isolated / "missing.jsonl").kept == 0
    with pytest.raises(ValueError, match="keep must be at least 1"):
        cache.prune(keep=0)


def test_prune_loses_no_record_appended_while_it_rewrites(isolated, monkeypatch):
    path = cache.user_cache_file()
    _prunable(path)
    late = _record(2000, 0.05, 8)
    rewrite = cache.write_atomically
    appender = threading.Thread(target=append_records, args=(path, [late]))

    def slow_rewrite(*args, **kwargs):
        appender.start()  # blocks on the lock prune holds
        time.sleep(0.3)
        return rewrite(*args, **kwargs)

    monkeypatch.setattr(cache, "write_atomically", slow_rewrite)
    cache.prune(keep=1)
    appender.join(10)
    records = read_records(path)
    assert [record.config["batch_tile"] for record in records] == [2, 32, 8] and records[-1] == late


def test_prune_and_list_commands(isolated, capsys):
    from tpc.cli import main

    _prunable(cache.user_cache_file())
    assert main(["cache", "prune", "--keep", "1", "--dry-run"]) == 0
    assert "would keep 2 of 11 lines; would drop 6 slower, 2 failed or of stale knob spaces, 1 unreadable" in \
        capsys.readouterr().out
    assert main(["cache", "prune", "--keep", "1"]) == 0
    assert "kept 2 of 11 lines" in capsys.readouterr().out
    assert main(["list", "--target", "x86"]) == 0
    out = capsys.readouterr().out
    assert "for x86" in out and out.count(" exact ") == 2

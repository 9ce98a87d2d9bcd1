"""Tune the presets on this machine and write their records to ``schedules/``.

The repository ships these records so that ``tpc.compile`` starts from a tuned schedule on
a machine of the same kind (same target fingerprint) before its user has tuned anything.
Usage: ``python scripts/tune_shipped_schedules.py [--trials 8] [--presets NAME ...]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import tpc
from tpc.records import append_records, read_records

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ["mace-l1", "mace-l2", "mace-small-l2", "mace-l3", "nequip", "fc-small"] + [
    f"gaunt-L{degree}" for degree in range(2, 11)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--presets", nargs="+", default=PRESETS, choices=tpc.presets.names())
    parser.add_argument("--output", type=Path, help="records file; default schedules/x86-<cpu>.jsonl")
    args = parser.parse_args()
    target = tpc.resolve_target("host")
    output = args.output or ROOT / "schedules" / f"x86-{target.tvm_dict.get('mcpu', 'generic')}.jsonl"
    with tempfile.TemporaryDirectory() as folder:
        os.environ["TPC_CACHE"] = folder
        records = []
        for name in args.presets:
            preset = tpc.presets.get(name)
            log = Path(folder) / f"{name}.jsonl"
            result = tpc.tune(preset.tp, batch=preset.batch, target=target, trials=args.trials, log=log,
                              progress=False)
            print(f"{name}: best {result.best.seconds * 1e3:.3f} ms, speed-up {result.speedup:.2f}x", flush=True)
            records += [record for record in read_records(log) if record.ok]
        partial = output.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        append_records(partial, records)
        partial.replace(output)
    print(f"wrote {len(records)} records to {output}")


if __name__ == "__main__":
    main()

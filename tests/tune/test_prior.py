import math

from tpc.records import Record
from tpc.schedule import tuning_space
from tpc.tune.prior import kindred, move_gains, one_knob_move

SPACE = tuning_space("cpu", ["cg"])
DEFAULT = {**SPACE.space_of("cg").default(), "in_place": False}  # the base the records move from
X86 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver1"}
X86_OTHER_CPU = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4"}
ARM = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-n1"}


def record(op, config, seconds, target=X86, version=None, batch=64):
    return Record(op, batch, "float32", target, f"fp-{target['mcpu']}",
                  SPACE.version_of("cg") if version is None else version, "cg", {**DEFAULT, **config}, seconds)


def test_a_moves_gain_is_the_median_over_the_groups_of_other_ops_on_kindred_targets():
    in_place = {"in_place": True}
    records = [r for op, ratio in (("a", 0.75), ("b", 0.8), ("c", 1.25))
               for r in (record(op, {}, 10e-3), record(op, in_place, ratio * 10e-3))]
    records += [record("b", {}, 9e-3, X86_OTHER_CPU), record("b", in_place, 7.2e-3, X86_OTHER_CPU)]
    records += [record("a", {"batch_tile": 16}, 5e-3), record("b", {"batch_tile": 16}, 5e-3)]
    ignored = [record("tuned", {}, 10e-3), record("tuned", in_place, 1e-4),           # the op being tuned
               record("arm", {}, 10e-3, ARM), record("arm", in_place, 1e-4, ARM),     # another architecture
               record("old", {}, 10e-3, version=0), record("old", in_place, 1e-4, version=0),
               Record("failed", 64, "float32", X86, "fp", SPACE.version_of("cg"), "cg", dict(DEFAULT), None,
                      "build failed"),
               record("a", {}, 1e-4, batch=128)]                                    # a group of one
    gains = move_gains(records + ignored, SPACE, X86, op="tuned")
    # Four groups (b on two CPUs): the median is b's gain, not the mean; the batch tile move,
    # measured by two groups, does not count.
    expected = -math.log(0.8)
    assert gains.keys() == {("cg", "in_place", False, True), ("cg", "in_place", True, False)}
    assert math.isclose(gains[("cg", "in_place", False, True)], expected)
    assert math.isclose(gains[("cg", "in_place", True, False)], -expected)


def test_moves_and_kindred_targets():
    assert one_knob_move({"algorithm": "cg", "batch_tile": 8, "in_place": False},
                         {"algorithm": "cg", "batch_tile": 8, "in_place": True}) == ("cg", "in_place", False, True)
    assert kindred(X86, X86_OTHER_CPU) and not kindred(X86, ARM)
    assert kindred({"kind": "cuda", "arch": "sm_90"}, {"kind": "cuda", "arch": "sm_80"})

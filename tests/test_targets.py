import platform

import pytest
import tvm

from tpc.targets import TARGET_NAMES, resolve_target


def test_named_targets():
    host = resolve_target("host")
    assert host.family == "cpu" and host.tvm_dict["mcpu"] == tvm.target.codegen.llvm_get_system_cpu()
    assert host.tvm_dict["num-cores"] >= 1 and host.runs_here() == (True, "")
    arm = resolve_target("arm")
    assert arm.tvm_dict["mtriple"] == "aarch64-linux-gnu" and "+neon" in arm.tvm_dict["mattr"]
    cuda = resolve_target("cuda:sm_80")
    assert cuda.family == "cuda" and cuda.tvm_dict == {"kind": "cuda", "arch": "sm_80"}
    assert resolve_target("cuda").tvm_dict["arch"] == "sm_90"
    if platform.machine() == "x86_64":
        assert resolve_target("x86").runs_here()[0] and not arm.runs_here()[0]
    for name in TARGET_NAMES:
        assert isinstance(resolve_target(name).tvm_target(), tvm.target.Target)


def test_full_tvm_dicts():
    spec = resolve_target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]})
    assert spec.name == "arm" and spec.family == "cpu"
    assert resolve_target({"kind": "cuda", "arch": "sm_75"}).family == "cuda"
    assert resolve_target("host").fingerprint == resolve_target("host").fingerprint
    assert resolve_target("host").fingerprint != resolve_target("arm").fingerprint


@pytest.mark.parametrize("bad,error,message", [
    ("tpu", ValueError, "valid targets: host, x86, arm, cuda"),
    ("cuda:90", ValueError, "sm_90"),
    ({"kind": "rocm"}, ValueError, "unsupported TVM target kind"),
    ({"kind": "nonsense-kind"}, ValueError, "invalid TVM target"),
    (3, TypeError, "target must be"),
])
def test_bad_targets(bad, error, message):
    with pytest.raises(error, match=message):
        resolve_target(bad)

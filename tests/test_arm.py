"""ARM kernels: cross-compiled, then run under qemu-aarch64 through a small C driver."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tvm_ffi

import tpc
from tpc.verify import random_inputs, relative_error, tolerance

TOOLS = ("aarch64-linux-gnu-gcc", "qemu-aarch64")
MISSING = [tool for tool in TOOLS if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"{', '.join(MISSING)} not installed: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user "
           "(.ci/run does this)",
)
SYSROOT = "/usr/aarch64-linux-gnu"
DRIVER_SOURCE = Path(__file__).parent / "native" / "kernel_driver.c"


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    executable = tmp_path_factory.mktemp("driver") / "kernel_driver"
    include = Path(tvm_ffi.__file__).parent / "include"
    subprocess.run(["aarch64-linux-gnu-gcc", "-O2", "-std=c11", "-D_GNU_SOURCE", "-rdynamic", f"-I{include}",
                    "-o", str(executable), str(DRIVER_SOURCE), "-ldl"], check=True, capture_output=True)
    return executable


def run_under_qemu(driver: Path, kernel: tpc.Kernel, arrays, folder: Path) -> np.ndarray:
    library = folder / "kernel.so"
    library.write_bytes(kernel.library_bytes())
    bits = np.dtype(kernel.dtype).itemsize * 8
    args = []
    for name, array in zip(("x1", "x2", "weight"), arrays):
        if array is not None:
            array.tofile(folder / f"{name}.bin")
            args.append(f"{folder / name}.bin:{'x'.join(map(str, array.shape))}")
    out_shape = (arrays[0].shape[0], kernel.spec.irreps_out.dim)
    args.append(f">{folder / 'out.bin'}:{out_shape[0]}x{out_shape[1]}")
    for index, table in enumerate(kernel.tables):
        table.tofile(folder / f"table{index}.bin")
        args.append(f"{folder / f'table{index}.bin'}:{'x'.join(map(str, table.shape))}")
    result = subprocess.run(["qemu-aarch64", "-L", SYSROOT, str(driver), str(library), str(bits), *args],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return np.fromfile(folder / "out.bin", dtype=kernel.dtype).reshape(out_shape)


@pytest.mark.parametrize("name,dtype,algorithm", [("mace-l2", "float32", "cg"), ("fc-small", "float32", "cg"),
                                                  ("fc-small", "float64", "cg"), ("gaunt-L4", "float32", "grid"),
                                                  ("gaunt-L3", "float64", "fourier")])
def test_arm_kernel_runs_under_qemu(name, dtype, algorithm, driver, tmp_path):
    tp = tpc.presets.get(name).tp
    kernel = tpc.compile(tp, target="arm", dtype=dtype, algorithm=algorithm)
    assert kernel.target.triple == "aarch64-linux-gnu"
    library = kernel.library_bytes()
    assert library[:4] == b"\x7fELF" and library[18] == 183  # e_machine EM_AARCH64
    arrays = random_inputs(tp, 9, np.random.default_rng(1), dtype)
    result = run_under_qemu(driver, kernel, arrays, tmp_path)
    assert relative_error(result, tp.reference(*arrays)) < tolerance(dtype)


def test_arm_kernel_saves_to_a_file(tmp_path):
    kernel = tpc.compile(tpc.presets.get("fc-small").tp, target="arm")
    kernel.save(tmp_path / "arm.tpc")
    with pytest.raises(ValueError, match="aarch64"):
        tpc.load(tmp_path / "arm.tpc")

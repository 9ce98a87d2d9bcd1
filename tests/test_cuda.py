"""CUDA kernels: generated and compiled to cubin everywhere, run where a GPU exists."""

import shutil

import numpy as np
import pytest
import tvm
from tvm.support import nvcc

import tpc
from tpc.verify import random_inputs, relative_error, tolerance

HAS_NVCC = shutil.which("nvcc") is not None
HAS_GPU = tvm.cuda(0).exist


def cuda_source(kernel: tpc.Kernel) -> str:
    (device_module,) = [m for m in kernel.library_module().imports if m.kind == "cuda"]
    return device_module.inspect_source()


@pytest.mark.skipif(not HAS_NVCC, reason="nvcc (CUDA toolkit) not installed")
@pytest.mark.parametrize("name,algorithm", [("mace-l2", "cg"), ("fc-small", "cg"), ("gaunt-L4", "grid"),
                                            ("gaunt-L3", "fourier")])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_kernel_compiles_to_cubin(name, algorithm, dtype):
    kernel = tpc.compile(tpc.presets.get(name).tp, target="cuda:sm_90", dtype=dtype, algorithm=algorithm)
    assert kernel.schedule.algorithm == algorithm
    source = cuda_source(kernel)
    assert "__global__" in source
    with kernel.target.tvm_target():
        cubin = nvcc.compile_cuda(source, target_format="cubin", compiler="nvcc")
    assert cubin[:4] == b"\x7fELF" and len(cubin) > 1000


def test_cuda_kernel_refuses_to_run_without_a_gpu():
    kernel = tpc.compile(tpc.presets.get("fc-small").tp, target="cuda")
    if HAS_GPU:
        pytest.skip("a GPU is present; test_cuda_kernel_on_gpu covers running")
    x1, x2, weight = random_inputs(kernel.spec, 2, np.random.default_rng(0), np.float32)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        kernel(x1, x2, weight)


def test_cuda_in_place_kernel_writes_no_path_buffers():
    tp = tpc.presets.get("mace-l2").tp
    assembled, in_place = (tpc.compile(tp, target="cuda:sm_90", schedule={"in_place": flag}) for flag in (False, True))
    assert in_place.schedule.config["in_place"]
    # uvu paths sum over no channel: their outputs are computed in the block kernels, and no
    # kernel copies path buffers into out.
    assert cuda_source(in_place).count("__global__") < cuda_source(assembled).count("__global__")


def test_sampled_cuda_configurations_generate_kernels():
    tp = tpc.presets.get("nequip").tp
    space = tpc.schedule.search_space("cuda")
    rng = np.random.default_rng(0)
    for config in [space.sample(rng) for _ in range(6)] + [{"in_place": True, "work_per_thread": 4}]:
        kernel = tpc.compile(tp, target="cuda:sm_90", schedule=config)
        assert kernel.schedule.config == space.validate(config)
        assert f"__launch_bounds__({kernel.schedule.config['threads_per_block']})" in cuda_source(kernel)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("name,algorithm,schedule", [
    ("mace-l2", "cg", None), ("mace-l2", "cg", {"in_place": True}), ("fc-small", "cg", None),
    ("fc-small", "cg", {"in_place": True, "materialize": "all"}), ("nequip", "cg", None),
    ("nequip", "cg", {"in_place": True, "work_per_thread": 4}), ("mace-l2", "cg", {"work_per_thread": 2}),
    ("gaunt-L6", "grid", None), ("gaunt-L4", "fourier", None)])
def test_cuda_kernel_on_gpu(name, algorithm, schedule):
    tp = tpc.presets.get(name).tp
    kernel = tpc.compile(tp, target="cuda", algorithm=algorithm, schedule=schedule)
    x1, x2, weight = random_inputs(tp, 1000, np.random.default_rng(0), np.float32)
    import torch

    args = [torch.from_numpy(a).cuda() for a in (x1, x2, weight) if a is not None]
    result = kernel(*args)
    assert relative_error(result.cpu().numpy(), tp.reference(x1, x2, weight)) < tolerance("float32")

"""The SelectiveScan CUDA kernel without a GPU: its algorithm as a numpy model against the reference
scan, the CMake build (nvcc for sm_87 and sm_90, warnings as errors), the host test binary that runs
the kernel's own thread functions on the CPU, the ctypes binding, and, where TensorRT headers are
given (TENSORRT_ROOT, one or more trees), the plugin library built against each of them."""

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from export.scan_kernel import (
    HOST_TEST,
    KERNEL_LIBRARY,
    PLUGIN_LIBRARY,
    SOURCE_DIR,
    KernelLibrary,
    ScanParams,
    build,
    plan_scan,
)
from export.scan_kernel import two_pass_scan as kernel_model
from seld_edge.ops import selective_scan
from tests.test_selective_scan import make_inputs, rel_err


def test_plan_cuts_the_issue_shapes() -> None:
    assert plan_scan(1, 1536, 2048) == (32, 64)  # Mamba-LM: 32 chunks of 64
    assert plan_scan(1, 256, 51200) == (400, 128)  # FFMamba first stage, 20 s: chunks of 4 tiles of 32 steps
    assert plan_scan(64, 4096, 1000) == (1, 1000)  # enough channels: one chunk, a single pass
    assert plan_scan(1, 8, 65) == (1, 65)  # too short for two chunks of 64 steps
    for length in (1, 63, 64, 65, 127, 128, 1000, 4097, 51200):
        chunks, chunk_length = plan_scan(1, 8, length)
        assert chunks * chunk_length >= length > (chunks - 1) * chunk_length
        assert chunks == 1 or (chunk_length >= 64 and chunk_length % 32 == 0), (length, chunks, chunk_length)


def numpy_inputs(inputs: dict[str, torch.Tensor], dtype: np.dtype = np.float32) -> dict[str, np.ndarray]:
    """The node's tensors as the kernel gets them: u, delta, B, C, z in `dtype`, the rest float32."""
    low = {"u", "delta", "B", "C", "z"}
    return {k: v.numpy().astype(dtype if k in low else np.float32) for k, v in inputs.items()}


@pytest.mark.parametrize(
    ("case", "plan"),
    [
        (dict(batch=2, dim=8, d_state=4, groups=4, length=1000), None),  # FFMamba-like: 11 chunks of 96
        (dict(batch=1, dim=4, d_state=16, length=8192, delta_scale=4.0), None),  # 128 chunks, exp(cumsum) overflows
        (dict(batch=1, dim=4, d_state=64, groups=2, length=300), None),
        (dict(batch=3, dim=4, d_state=1, length=50), None),  # one chunk: pass 2 only
        (dict(batch=2, dim=8, d_state=4, groups=2, length=1000), (7, 143)),  # a cut whose last chunk is short
    ],
)
@pytest.mark.parametrize("with_z", [False, True])
def test_numpy_model_of_the_kernel_matches_the_reference(case: dict, plan: tuple | None, with_z: bool) -> None:
    inputs = make_inputs(**case, seed=3)
    z = inputs["z"] if with_z else None
    ref = selective_scan(
        inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"], D=inputs["D"], z=z,
        delta_bias=inputs["delta_bias"], delta_softplus=True, impl="reference",
    )  # fmt: skip
    n = numpy_inputs(inputs)
    y = kernel_model(
        n["u"], n["delta"], n["A"], n["B"], n["C"], D=n["D"], z=n["z"] if with_z else None,
        delta_bias=n["delta_bias"], delta_softplus=True, plan=plan,
    )  # fmt: skip
    error = rel_err(torch.from_numpy(y), ref)
    print(f"{case} plan {plan or plan_scan(*inputs['u'].shape)} z={with_z}: max rel error {error:.2e}")
    assert y.dtype == np.float32
    assert error <= 1e-5


def test_numpy_model_in_float16_stays_within_the_half_bound() -> None:
    inputs = make_inputs(batch=2, dim=8, d_state=16, groups=4, length=700, seed=5)
    half = numpy_inputs(inputs, np.float16)
    rounded = {k: torch.from_numpy(v.astype(np.float32)) for k, v in half.items()}
    ref = selective_scan(
        rounded["u"], rounded["delta"], rounded["A"], rounded["B"], rounded["C"], D=rounded["D"],
        z=rounded["z"], delta_bias=rounded["delta_bias"], delta_softplus=True, impl="reference",
    )  # fmt: skip
    y = kernel_model(
        half["u"], half["delta"], half["A"], half["B"], half["C"], D=half["D"], z=half["z"],
        delta_bias=half["delta_bias"], delta_softplus=True,
    )  # fmt: skip
    error = rel_err(torch.from_numpy(y.astype(np.float32)), ref)
    print(f"float16 inputs and output: max rel error {error:.2e}")
    assert y.dtype == np.float16
    assert error <= 1e-2


def require_cuda_tools() -> None:
    missing = [tool for tool in ("cmake", "nvcc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH: the CUDA kernel cannot be compiled here")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kernel library and host test built for Orin (sm_87) and H100 (sm_90) with warnings as errors."""
    require_cuda_tools()
    return build(tmp_path_factory.mktemp("scan"), "87;90", werror=True, targets=("seld_selective_scan", HOST_TEST))


@pytest.mark.slow
def test_host_test_binary_runs_the_kernel_threads_on_the_cpu(built: Path) -> None:
    done = subprocess.run([str(built / HOST_TEST)], capture_output=True, text=True)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok   CPU run of the kernel threads") == 8
    assert "PASSED: 0 failure(s)" in done.stdout


@pytest.mark.slow
def test_python_plan_is_the_kernel_plan(built: Path) -> None:
    library = KernelLibrary(built / KERNEL_LIBRARY)
    for batch, dim, length in [
        (1, 1536, 2048), (1, 256, 51200), (3, 100, 777), (2, 8, 1), (64, 4096, 10), (1, 1, 0), (1, 8, 65), (1, 8, 4097)
    ]:  # fmt: skip
        assert library.plan(batch, dim, length) == plan_scan(batch, dim, length)
    assert library.workspace_size(1, 1536, 16, 2048) == 32 * 1536 * 17 * 4
    assert library.workspace_size(64, 4096, 16, 2048) == 0  # one chunk needs no workspace


@pytest.mark.slow
def test_library_refuses_bad_parameters_with_a_reason(built: Path) -> None:
    library = KernelLibrary(built / KERNEL_LIBRARY)
    params = ScanParams(batch=1, dim=8, length=16, d_state=65, groups=1)
    assert library.check(params) == "d_state must be between 1 and 64"
    params.d_state, params.groups = 4, 3
    assert library.check(params) == "D must be positive and divisible by groups"
    params.groups = 2
    assert library.check(params) == "u, delta, A, B, C, delta_bias and y must be given"
    with pytest.raises(ValueError, match="must be given"):
        library.launch(params, 0, 0, 0)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error path of a machine without a GPU")
def test_launch_without_a_gpu_reports_the_cuda_error(built: Path) -> None:
    library = KernelLibrary(built / KERNEL_LIBRARY)
    buffers = {name: ctypes.create_string_buffer(64 * 4) for name in ("u", "delta", "A", "B", "C", "delta_bias", "y")}
    params = ScanParams(
        batch=1, dim=4, length=8, d_state=2, groups=1, **{k: ctypes.addressof(v) for k, v in buffers.items()}
    )
    assert library.check(params) is None
    with pytest.raises(RuntimeError, match=r"^selective scan kernel: "):
        library.launch(params, 0, 0, 0)


PTXAS_ENTRY = re.compile(
    r"Compiling entry function '(?P<name>\w+)'.*?(?P<spill>\d+) bytes spill stores.*?Used (?P<regs>\d+) registers",
    re.S,
)
SCAN_KERNEL = re.compile(r"scanKernelI(6__half|f)Li(\d+)ELb([01])E")
PASSES = {"0": "local", "1": "output"}


@pytest.mark.slow
def test_scan_kernels_do_not_spill_on_orin() -> None:
    """ptxas's report for sm_87 (Orin): no scan kernel spills registers, even at N = 64 (the state and A live in
    registers; the tiles in shared memory). Before the shared-memory tiles N = 32 and 64 took 255 registers and
    spilled up to 416 bytes."""
    require_cuda_tools()
    source = SOURCE_DIR / "selective_scan.cu"
    command = ["nvcc", "-std=c++17", "-O3", "-arch=sm_87", "-Xptxas", "-v", "-c", str(source), "-o", os.devnull]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    scans = {}
    for entry in PTXAS_ENTRY.finditer(done.stderr):
        kernel = SCAN_KERNEL.search(entry["name"])  # scanKernel<T, kMaxN, kOutput>, mangled
        if kernel is not None:
            label = f"{'float16' if kernel[1] == '6__half' else 'float32'} N<={kernel[2]} {PASSES[kernel[3]]} pass"
            scans[label] = int(entry["regs"]), int(entry["spill"])
    for label, (regs, spill) in sorted(scans.items()):
        print(f"{label}: {regs} registers, {spill} bytes spilled")
    assert len(scans) == 20  # float and half, N = 4..64, local and output pass
    assert all(spill == 0 for _, spill in scans.values())
    assert max(regs for regs, _ in scans.values()) < 255


# TensorRT include trees to build the plugin against, os.pathsep-separated: the public headers of NVIDIA/TensorRT at
# v10.3.0 (JetPack 6.1/6.2), v10.13.3 (JetPack 7) and the newest tag, fetched outside the repository, or an install.
TENSORRT_ROOTS = [Path(p) for p in os.environ.get("TENSORRT_ROOT", "").split(os.pathsep) if p]
NO_HEADERS = (
    "no TensorRT headers here (CI): set TENSORRT_ROOT to one or more TensorRT trees, os.pathsep-separated "
    "(e.g. checkouts of NVIDIA/TensorRT v10.3.0 and v10.13.3), to build the plugin against them"
)


def header_version(root: Path) -> tuple[int, int]:
    """(major, minor) as the C preprocessor reads NvInferVersion.h: from 10.13 on the numbers sit behind
    other macros (TRT_MAJOR_ENTERPRISE), so only the preprocessor gets them right."""
    include = root / "include" if (root / "include" / "NvInferVersion.h").is_file() else root
    source = '#include "NvInferVersion.h"\nNV_TENSORRT_MAJOR NV_TENSORRT_MINOR\n'
    done = subprocess.run(
        ["c++", "-E", "-P", f"-I{include}", "-x", "c++", "-"], input=source, capture_output=True, text=True, check=True
    )
    major, minor = done.stdout.split()[-2:]
    return int(major), int(minor)


@pytest.mark.slow
@pytest.mark.parametrize(
    "root", TENSORRT_ROOTS or [pytest.param(None, marks=pytest.mark.skip(reason=NO_HEADERS))], ids=str
)
def test_plugin_library_is_the_flavour_of_its_headers(root: Path, tmp_path: Path) -> None:
    """IPluginV3 (getCreators) for TensorRT 10 and later, IPluginV2DynamicExt (getPluginCreators) for 8.6, built
    with -Wall -Wextra -Werror; only the entry points exported, no TensorRT library linked."""
    require_cuda_tools()
    major, minor = header_version(root)
    build(tmp_path, "87", root, werror=True, targets=("seld_scan_plugin",))
    plugin = tmp_path / PLUGIN_LIBRARY
    nm = subprocess.run(["nm", "-D", "--defined-only", str(plugin)], capture_output=True, text=True, check=True)
    exported = {line.split()[-1] for line in nm.stdout.splitlines() if " T " in line}
    print(f"TensorRT {major}.{minor} headers in {root}: exports {sorted(exported)}")
    assert exported == {"getCreators" if major >= 10 else "getPluginCreators", "setLoggerFinder"}
    needed = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    assert "libnvinfer" not in needed  # loads with load_library / --dynamicPlugins, no link to TensorRT
    ctypes.CDLL(str(plugin))  # every symbol resolved without TensorRT


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine run the script itself")
def test_gpu_benchmark_script_imports_and_says_when_there_is_no_gpu() -> None:
    script = Path(__file__).resolve().parents[1] / "export" / "plugins" / "selective_scan" / "bench_gpu.py"
    done = subprocess.run([sys.executable, str(script), "--shapes", "mamba_lm"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == "bench_gpu.py: no CUDA device visible to torch"

"""The SelectiveScan CUDA kernel (export/plugins/selective_scan) from Python: a numpy model of its
algorithm, the CMake build, and a ctypes binding of its C API.

The numpy model cuts the sequence exactly as the kernel does (``plan_scan`` mirrors ``seld::planScan``,
and a test compares the two through ctypes) and carries the chunk states in the same order, so the
chunked two-pass algorithm is proven against the reference scan in CI, where there is no GPU:

    pass 1  every chunk but the last, from a zero state: its end state and its sum of dt;
    carry   in chunk order: h_in[0] = 0, h_in[c + 1] = exp(A * sum_dt[c]) * h_in[c] + end[c];
    pass 2  every chunk again from h_in, writing y.

The kernel computes exp(dt * A) as exp2(dt * A * log2(e)) in float32; so does the model.
No torch here: the binding takes device pointers as integers.
"""

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

SOURCE_DIR = Path(__file__).resolve().parent / "plugins" / "selective_scan"
KERNEL_LIBRARY = "libseld_selective_scan.so"
PLUGIN_LIBRARY = "libseld_scan_plugin.so"
HOST_TEST = "seld_scan_host_test"

# seld::kTargetThreads, seld::kMinChunkLength and seld::kTileSteps (selective_scan.h).
TARGET_THREADS = 1 << 17
MIN_CHUNK_LENGTH = 64
TILE_STEPS = 32
LOG2E = np.float32(1.4426950408889634)

DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}  # seld::ScanDType


def plan_scan(batch: int, dim: int, length: int) -> tuple[int, int]:
    """(chunks, chunk_length) as seld::planScan cuts the sequence: enough chunks for about TARGET_THREADS
    threads of (batch, chunk, channel), none empty; when there are several, every one but the last has at
    least MIN_CHUNK_LENGTH steps and a whole number of the kernel's TILE_STEPS-step tiles."""
    if length <= 0:
        return 1, 0
    chunks = min(_ceil_div(TARGET_THREADS, max(batch * dim, 1)), max(length // MIN_CHUNK_LENGTH, 1))
    if chunks == 1:
        return 1, length
    chunk_length = _ceil_div(_ceil_div(length, chunks), TILE_STEPS) * TILE_STEPS
    return _ceil_div(length, chunk_length), chunk_length


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0)))).astype(np.float32)


def two_pass_scan(
    u: np.ndarray,
    delta: np.ndarray,
    A: np.ndarray,
    B: np.ndarray,
    C: np.ndarray,
    D: np.ndarray | None = None,
    z: np.ndarray | None = None,
    delta_bias: np.ndarray | None = None,
    delta_softplus: bool = False,
    plan: tuple[int, int] | None = None,
) -> np.ndarray:
    """The kernel's algorithm in numpy, float32 state and sums, y in u's dtype (float32 or float16).

    Shapes as the node's (README.md): u, delta, z (batch, D, L); A (D, N); B, C (batch, G, N, L).
    ``plan`` overrides plan_scan's (chunks, chunk_length), to exercise other cuts.
    """
    batch, dim, length = u.shape
    d_state = A.shape[1]
    chunks, chunk_length = plan or plan_scan(batch, dim, length)
    f32 = np.float32
    group = np.arange(dim) // (dim // B.shape[1])
    bias = np.zeros(dim, f32) if delta_bias is None else delta_bias.astype(f32)

    def padded(x: np.ndarray) -> np.ndarray:
        """(..., L) -> (..., chunks, chunk_length), zero-padded: a padded step has dt = 0 only without
        softplus, so every step past L is masked out below rather than trusted."""
        pad = chunks * chunk_length - length
        x = np.pad(x.astype(f32), [(0, 0)] * (x.ndim - 1) + [(0, pad)])
        return x.reshape(*x.shape[:-1], chunks, chunk_length)

    dt = padded(delta) + bias[:, None, None]
    dt = _softplus(dt) if delta_softplus else dt
    dt *= padded(np.ones((1, 1, length), f32))  # steps past L leave the state alone
    uu = padded(u)
    Bd = padded(B)[:, group]  # (batch, D, N, chunks, chunk_length)
    Cd = padded(C)[:, group]
    a2 = (A.astype(f32) * LOG2E)[None, :, :, None]  # (1, D, N, 1): broadcast over chunks

    def scan(state: np.ndarray, chunk: slice, write_y: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Steps of the chunks in `chunk` (all at once, one step at a time): state (batch, D, N, chunks)."""
        dt_sum = np.zeros(state.shape[:2] + state.shape[3:], f32)
        y = np.zeros((*dt_sum.shape, chunk_length), f32)
        for t in range(chunk_length):
            step = dt[:, :, chunk, t]
            state = np.exp2(step[:, :, None] * a2) * state + (step * uu[:, :, chunk, t])[:, :, None] * Bd[..., chunk, t]
            dt_sum += step
            if write_y:
                y[..., t] = (Cd[..., chunk, t] * state).sum(2, dtype=f32)
        return state, dt_sum, y

    entering = np.zeros((batch, dim, d_state, chunks), f32)
    if chunks > 1:
        local = slice(0, chunks - 1)
        end, dt_sum, _ = scan(np.zeros((batch, dim, d_state, chunks - 1), f32), local, write_y=False)
        h = np.zeros((batch, dim, d_state), f32)
        for c in range(chunks - 1):
            h = np.exp2(a2[..., 0] * dt_sum[:, :, None, c]) * h + end[..., c]
            entering[..., c + 1] = h
    _, _, y = scan(entering, slice(0, chunks), write_y=True)
    y = y.reshape(batch, dim, -1)[..., :length]
    if D is not None:
        y = y + D.astype(f32)[:, None] * u.astype(f32)
    if z is not None:
        zf = z.astype(f32)
        y = y * (zf / (f32(1) + np.exp(-zf)))
    return y.astype(u.dtype)


def build(
    build_dir: Path,
    architectures: str = "native",
    tensorrt_root: Path | None = None,
    werror: bool = False,
    targets: tuple[str, ...] = (),
) -> Path:
    """Configure and build the CMake project into build_dir (only ``targets`` when given); returns build_dir.
    The plugin library is built too when tensorrt_root (or a system location) has TensorRT headers. Raises
    RuntimeError with the compiler's last lines when a step fails."""
    for tool in ("cmake", "nvcc"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not on PATH: the CUDA kernel cannot be built here")
    configure = ["cmake", "-S", str(SOURCE_DIR), "-B", str(build_dir), f"-DCMAKE_CUDA_ARCHITECTURES={architectures}"]
    configure += [f"-DSELD_WERROR={'ON' if werror else 'OFF'}"]
    if tensorrt_root is not None:
        configure.append(f"-DTENSORRT_ROOT={tensorrt_root}")
    compile_ = ["cmake", "--build", str(build_dir), "-j", "2"] + (["--target", *targets] if targets else [])
    for command in (configure, compile_):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            raise RuntimeError(f"{' '.join(command[:2])} failed:\n{tail}")
    return build_dir


class ScanParams(ctypes.Structure):
    """seld::ScanParams, field for field (KernelLibrary checks the size against the library's)."""

    _fields_ = [
        ("batch", ctypes.c_int64),
        ("dim", ctypes.c_int64),
        ("length", ctypes.c_int64),
        ("d_state", ctypes.c_int32),
        ("groups", ctypes.c_int32),
        ("delta_softplus", ctypes.c_int32),
        ("has_z", ctypes.c_int32),
        ("has_D", ctypes.c_int32),
        ("dtype", ctypes.c_int32),
        ("u", ctypes.c_void_p),
        ("delta", ctypes.c_void_p),
        ("A", ctypes.c_void_p),
        ("B", ctypes.c_void_p),
        ("C", ctypes.c_void_p),
        ("delta_bias", ctypes.c_void_p),
        ("D_skip", ctypes.c_void_p),
        ("z", ctypes.c_void_p),
        ("y", ctypes.c_void_p),
    ]


class KernelLibrary:
    """libseld_selective_scan.so through ctypes: plan, workspace size, parameter check and launch."""

    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))
        lib = self.lib
        lib.seld_scan_params_size.restype = ctypes.c_int32
        lib.seld_scan_plan.argtypes = [ctypes.c_int64] * 3 + [ctypes.POINTER(ctypes.c_int64)] * 2
        lib.seld_scan_workspace_size.restype = ctypes.c_size_t
        lib.seld_scan_workspace_size.argtypes = [ctypes.c_int64] * 4
        lib.seld_scan_check.restype = ctypes.c_char_p
        lib.seld_scan_check.argtypes = [ctypes.POINTER(ScanParams)]
        lib.seld_selective_scan.restype = ctypes.c_int32
        lib.seld_selective_scan.argtypes = [
            ctypes.POINTER(ScanParams),
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_void_p,
        ]
        lib.seld_cuda_error_string.restype = ctypes.c_char_p
        lib.seld_cuda_error_string.argtypes = [ctypes.c_int32]
        if lib.seld_scan_params_size() != ctypes.sizeof(ScanParams):
            raise RuntimeError(f"{path}: ScanParams layout differs from export/scan_kernel.py's")

    def plan(self, batch: int, dim: int, length: int) -> tuple[int, int]:
        chunks, chunk_length = ctypes.c_int64(), ctypes.c_int64()
        self.lib.seld_scan_plan(batch, dim, length, ctypes.byref(chunks), ctypes.byref(chunk_length))
        return chunks.value, chunk_length.value

    def workspace_size(self, batch: int, dim: int, d_state: int, length: int) -> int:
        return self.lib.seld_scan_workspace_size(batch, dim, d_state, length)

    def check(self, params: ScanParams) -> str | None:
        """None when the launcher would accept params, else its one-line reason."""
        reason = self.lib.seld_scan_check(ctypes.byref(params))
        return None if reason is None else reason.decode()

    def launch(self, params: ScanParams, workspace: int, workspace_size: int, stream: int) -> None:
        """Enqueue the scan on `stream` (a cudaStream_t as an integer, 0 for the default stream)."""
        reason = self.check(params)
        if reason is not None:
            raise ValueError(reason)
        status = self.lib.seld_selective_scan(ctypes.byref(params), workspace or None, workspace_size, stream or None)
        if status != 0:
            raise RuntimeError(f"selective scan kernel: {self.lib.seld_cuda_error_string(status).decode()}")

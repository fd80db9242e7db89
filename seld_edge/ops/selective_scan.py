"""Mamba's selective scan (mamba-ssm's ``selective_scan_fn`` semantics): three implementations, one also compiled.

With ``delta = softplus(delta + delta_bias)`` (each part when asked for), every channel d of group
g = d // (D / G) runs the linear recurrence, from x_0 = 0,

    x_t = exp(delta_t A_d) * x_(t-1) + delta_t B_(g,t) u_t        y_t = C_(g,t) . x_t + D_d u_t

and ``y *= silu(z)`` when z is given. State and sums are kept in fp32 (fp64 for fp64 inputs, so that
gradcheck works) whatever the input dtype; y comes back in u's dtype.

- ``reference``: the loop over time, written as mamba-ssm's ``selective_scan_ref``; the definition.
- ``chunked``: the same recurrence as whole-tensor steps: time cut in chunks, all chunks at once, a
  few steps at a time inside each, twice (to the chunk's end state, then again from the state that
  enters it), the state carried across chunks by the same method one level up until few are left,
  and on a CPU across cache-sized blocks of time; for CPU and GPU training, and written in ONNX ops
  for export.
- ``compiled``: the chunked form with each block's steps compiled by torch.compile (Inductor), which
  runs a chunk's steps as one loop over memory; for CPU inference.
- ``cuda``: mamba-ssm's fused kernel when it is installed and the tensors are on a GPU.
"""

import math
from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F

from seld_edge.errors import SeldEdgeError

# Steps per chunk. Measured on one CPU core at FFMamba's first stage (D 256, N 4, G 4, L 12800),
# 512-step blocks, 30 interleaved runs: K = 8 / 16 / 32 took 39.1 / 37.5 / 38.7 ms (medians).
CHUNK_SIZE = 16
# Recurrences of up to this many rows (a block's chunk ends) are carried one whole-tensor step per row.
# Each step costs a few microseconds of dispatch whatever its size, so for so few rows stepping beats
# chunking them again: carrying the 64 chunk ends of each 512-step block (K = 8) took 4.2 ms per
# FFMamba first-stage scan stepwise and 4.9 ms as chunks of chunks with log-depth doubling on top.
SEQUENTIAL_STEPS = 64
# Time steps per block on a CPU. A block's decays and drives (D*N*block floats each, 2 MB at FFMamba's
# first stage) stay in cache through both passes, and only one block's are alive at a time. Same shape,
# K = 16, 20 interleaved runs: blocks of 256 / 512 / 1024 / 2048 steps took 40.3 / 38.0 / 39.3 / 42.7 ms
# (medians), one block of the whole sequence (as on a GPU) 44.6 ms; a process running one 60 s scan
# (L 153,600; 0.57 GB before it) peaks at 1.5 GB resident with 512-step blocks, 2.8 GB with one block.
CPU_BLOCK_SIZE = 512

IMPLS = ("auto", "reference", "chunked", "compiled", "cuda")


ScanResult = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _state_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for fp16/bf16/fp32 inputs, fp64 for fp64 inputs."""
    return torch.promote_types(dtype, torch.float32)


def _check_shapes(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
) -> None:
    """Raise ValueError naming the first tensor whose shape does not fit u (batch, D, L)."""
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, D, L), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be (D, N) with D = {dim}, got shape {tuple(A.shape)}")
    d_state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.dim() != 4 or t.shape[0] != batch or t.shape[2] != d_state or t.shape[3] != length:
            raise ValueError(
                f"{name} must be (batch, G, N, L) = ({batch}, G, {d_state}, {length}), got shape {tuple(t.shape)}"
            )
    if B.shape[1] != C.shape[1]:
        raise ValueError(f"B and C must have the same number of groups, got {B.shape[1]} and {C.shape[1]}")
    if dim % B.shape[1] != 0:
        raise ValueError(f"D = {dim} channels must be divisible by the G = {B.shape[1]} groups of B and C")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (dim,):
            raise ValueError(f"{name} must be ({dim},), got shape {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}")


def _prepare_delta(
    delta: torch.Tensor, delta_bias: torch.Tensor | None, delta_softplus: bool, dtype: torch.dtype
) -> torch.Tensor:
    """delta in the state dtype, plus its bias, through softplus when asked (mamba-ssm's order)."""
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    return F.softplus(delta) if delta_softplus else delta


def _finish(
    y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """Skip connection and SiLU gate in the state dtype, then back to u's dtype."""
    if D is not None:
        y = torch.addcmul(y, u.to(dtype), D.to(dtype)[:, None])
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(u.dtype)


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> ScanResult:
    """The recurrence one time step at a time: slow, plainly the definition the others are tested on."""
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    dtype = _state_dtype(u.dtype)
    per_group = u.shape[1] // B.shape[1]
    delta = _prepare_delta(delta, delta_bias, delta_softplus, dtype)
    # Each group's B and C serve per_group consecutive channels: (batch, D, L, N).
    B = B.to(dtype).repeat_interleave(per_group, dim=1).transpose(2, 3)
    C = C.to(dtype).repeat_interleave(per_group, dim=1).transpose(2, 3)
    decay = torch.exp(delta[..., None] * A.to(dtype)[:, None, :])
    drive = (delta * u.to(dtype))[..., None] * B
    x = u.new_zeros((u.shape[0], u.shape[1], A.shape[1]), dtype=dtype)
    ys = []
    for t in range(u.shape[2]):
        x = decay[:, :, t] * x + drive[:, :, t]
        ys.append((x * C[:, :, t]).sum(-1))
    y = _finish(torch.stack(ys, dim=2), u, D, z, dtype)
    return (y, x) if return_last_state else y


def _linear_scan(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """All x_t of x_t = a_t x_(t-1) + b_t along dim 0, from x_(-1) = x: carries a scan's state across its chunks.

    Up to SEQUENTIAL_STEPS rows, one whole-tensor step per row. Longer, time is cut in chunks of
    ``chunk`` rows: each chunk's rows run one after another (every chunk at once) from a zero state,
    keeping the running product of the decays; the chunk ends form the same recurrence, one row per
    chunk, solved by this function; then each chunk adds its entering state times the running decay.
    The padding rows (a = 1, b = 0) leave the state as it was, so the last row is the true last state.
    """
    if a.shape[0] <= SEQUENTIAL_STEPS:
        states = []
        for a_t, b_t in zip(a.unbind(0), b.unbind(0), strict=True):
            x = torch.addcmul(b_t, a_t, x)
            states.append(x)
        return torch.stack(states)
    length, rest = a.shape[0], a.shape[1:]
    n_chunks = (length + chunk - 1) // chunk
    pad = n_chunks * chunk - length
    a = torch.cat([a, a.new_ones((pad, *rest))]).view(n_chunks, chunk, *rest)
    b = torch.cat([b, b.new_zeros((pad, *rest))]).view(n_chunks, chunk, *rest)
    a, b = a.unbind(1), b.unbind(1)  # see _scan_block on unbind
    states, decays = [b[0]], [a[0]]
    for a_k, b_k in zip(a[1:], b[1:], strict=True):
        states.append(torch.addcmul(b_k, a_k, states[-1]))
        decays.append(a_k * decays[-1])
    ends = _linear_scan(decays[-1], states[-1], x, chunk)
    entering = torch.cat([x[None], ends[:-1]])
    x = torch.stack([torch.addcmul(s, d, entering) for s, d in zip(states, decays, strict=True)], dim=1)
    return x.view(n_chunks * chunk, *rest)[:length]


def _time_major(t: torch.Tensor, shape: tuple[int, ...], padded_length: int) -> torch.Tensor:
    """(..., L) -> (padded_length, *shape), zeros after L: each time step one contiguous slice.

    Written as the transpose of one 2-D matrix into a contiguous one, which PyTorch copies in cache
    blocks: 2.9 ms for (256, 12800) on one core, 4.2 ms through a permuted 3-D view.
    """
    length = t.shape[-1]
    out = t.new_empty((padded_length, t.numel() // length))
    out[:length].copy_(t.reshape(-1, length).t())
    out[length:].zero_()
    return out.view(padded_length, *shape)


def _time_major_inputs(
    u: torch.Tensor,
    delta: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The scan's inputs time-major in the state dtype, padded to whole chunks, for ``_scan_block``.

    Returns dt, du = delta * u (steps, batch, G, 1, H) and B, C (steps, batch, G, N, 1). The padding
    steps have delta = 0: decay 1 and no drive, they leave the state as it was. The state is laid out
    (..., G, N, H), the channels of a group innermost, so the broadcasts run over them.
    """
    dtype = _state_dtype(u.dtype)
    batch, dim, length = u.shape
    groups, d_state = B.shape[1], B.shape[2]
    padded = -(-length // chunk) * chunk
    channels, states = (batch, groups, 1, dim // groups), (batch, groups, d_state, 1)
    dt = _time_major(_prepare_delta(delta, delta_bias, delta_softplus, dtype), channels, padded)
    du = dt * _time_major(u.to(dtype), channels, padded)
    return dt, du, _time_major(B.to(dtype), states, padded), _time_major(C.to(dtype), states, padded)


def _scan_block(
    dt: torch.Tensor,
    du: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    A2: torch.Tensor,
    x: torch.Tensor,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One block of time steps, entered with state x: returns the block's C . x_t and its last state.

    Time-major inputs from ``_time_major_inputs``; A2 = A log2(e) (G, N, H); x (batch, G, N, H). The steps
    are cut in chunks, all chunks worked at once:
    1. every step's decay exp(delta A) = exp2(delta A2), each computed once, and drive delta B u;
    2. each chunk from a zero state to its end, one whole-tensor step at a time;
    3. the state entering each chunk: the chunk ends carried across chunks from x (``_linear_scan``)
       with each chunk's whole decay exp2(A2 * sum of its deltas), whose exponent is never positive;
    4. each chunk again from its entering state, reading out C . x_t as it goes.
    Running the chunk twice costs less than storing the decay since the chunk began for every step.
    """
    n_chunks = dt.shape[0] // chunk
    dt, du, B, C = (t.view(n_chunks, chunk, *t.shape[1:]) for t in (dt, du, B, C))
    # Per-step views through unbind: its backward stacks the steps' gradients once, where indexing
    # each step fills a whole-block tensor of zeros per step (FFMamba's first-stage scan at batch 4,
    # two threads: backward 954 ms indexing, 548 ms with unbind).
    decay = torch.exp2(dt * A2).unbind(1)  # K x (n, batch, G, N, H)
    drive = (du * B).unbind(1)
    end = drive[0]
    for k in range(1, chunk):
        end = torch.addcmul(drive[k], decay[k], end)
    chunk_decay = torch.exp2(dt.sum(1) * A2)
    ends = _linear_scan(chunk_decay, end, x, chunk)
    state = torch.cat([x[None], ends[:-1]])
    ys = []
    for decay_k, drive_k, C_k in zip(decay, drive, C.unbind(1), strict=True):
        state = torch.addcmul(drive_k, decay_k, state)
        ys.append((state * C_k).sum(-2))
    return torch.stack(ys, dim=1).flatten(0, 1), ends[-1]


def _scan_outputs(
    dt: torch.Tensor,
    du: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    A2: torch.Tensor,
    x: torch.Tensor,
    chunk: int,
    block: int,
    u: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The scan of ``_time_major_inputs``' tensors, ``block`` steps at a time from state x, with its y
    back in u's layout (batch, D, steps) after the D skip and z gate; and the last state."""
    ys = []
    for start in range(0, dt.shape[0], block):
        steps = slice(start, start + block)
        y, x = _scan_block(dt[steps], du[steps], B[steps], C[steps], A2, x, chunk)
        ys.append(y)
    batch, dim, length = u.shape
    y = (torch.cat(ys) if len(ys) > 1 else ys[0])[:length]
    # Contiguous before _finish, whose element-wise ops would otherwise keep y's time-major strides.
    y = y.reshape(length, batch * dim).t().contiguous().view(batch, dim, length)
    return _finish(y, u, D, z, dt.dtype), x


@cache
def _compiled(step: Callable) -> Callable:
    """``step`` compiled by torch.compile (Inductor), once per process.

    The two steps of a block are compiled apart: in one graph Inductor folds the transposes of
    ``_time_major_inputs`` into the scan's loads, reading across time with scalar gathers (69 ms per
    FFMamba first-stage scan instead of 21 ms).
    """
    return torch.compile(step, dynamic=False)


def selective_scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk_size: int = CHUNK_SIZE,
    block_size: int | None = None,
    compiled: bool = False,
) -> ScanResult:
    """The scan as whole-tensor steps over chunks of ``chunk_size`` time steps, all chunks at once.

    The recurrence is first-order linear in the state, x_t = a_t x_(t-1) + b_t with a_t =
    exp(delta_t A) <= 1 and b_t = delta_t B_t u_t per (channel, state) pair, so it is solved over
    time-major tensors (each step a contiguous slice) by ``_scan_block``, one block of ``block_size``
    steps after another, the state carried between blocks. By default a block is CPU_BLOCK_SIZE steps
    on a CPU, whose cache then holds the block's tensors, and the whole sequence on a GPU (or any
    other device), which wants the most work per launch, and wherever autograd records: it keeps
    every block's tensors anyway, and one block backpropagates faster (649 vs 728 ms, forward and
    backward of FFMamba's first-stage scan at batch 4 on two threads). Decays are only ever
    multiplied, never divided, so long sequences cannot overflow where exp(cumsum(delta A)) and its
    inverse would. export/selective_scan_onnx.py writes the same computation, one block, in ONNX ops.

    ``compiled=True`` runs each whole block's two steps (``_time_major_inputs``, ``_scan_outputs``)
    compiled by torch.compile, which fuses a chunk's steps into one loop over memory and reads the
    time-major copies from cache: 1.6-1.8x faster on one CPU core (``seld-edge bench scan``). For CPU
    inference only; the first call for each shape of the inputs compiles (about 20 s, then cached on disk
    by Inductor), and dynamo compiles at most 8 shapes per process (``torch._dynamo.config.recompile_limit``)
    before it falls back to running the steps uncompiled.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    recording = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (u, delta, A, B, C))
    if compiled and recording:
        raise ValueError("compiled=True is for inference: call it under torch.no_grad() or torch.inference_mode()")
    if compiled and u.device.type != "cpu":
        raise ValueError(f"compiled=True is for CPU tensors, got u on {u.device}")
    dtype = _state_dtype(u.dtype)
    batch, dim, length = u.shape
    groups, d_state = B.shape[1], A.shape[1]
    per_group = dim // groups
    block = block_size or (CPU_BLOCK_SIZE if u.device.type == "cpu" and not recording else length)
    block = -(-block // chunk_size) * chunk_size
    # Contiguous, or the products with it would take its transposed strides and every step would too.
    # In base 2: exp(delta A) = exp2(delta A log2(e)), and PyTorch's exp2 runs 3x faster than its exp on
    # CPU (13 M values, one core: 2.9 vs 8.9 ms) at 2.6e-7 relative error.
    A2 = (A.to(dtype) * math.log2(math.e)).view(groups, per_group, d_state).transpose(1, 2).contiguous()  # (G, N, H)
    x = u.new_zeros((batch, groups, d_state, per_group), dtype=dtype)

    def scan(steps: tuple, x: torch.Tensor, compile_steps: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        time_major_inputs, scan_outputs = (
            (_compiled(_time_major_inputs), _compiled(_scan_outputs))
            if compile_steps
            else (_time_major_inputs, _scan_outputs)
        )
        inputs = time_major_inputs(u[steps], delta[steps], B[steps], C[steps], delta_bias, delta_softplus, chunk_size)
        return scan_outputs(*inputs, A2, x, chunk_size, block, u[steps], D, None if z is None else z[steps])

    if compiled:
        # One block per compiled call: its inputs are made time-major just before its scan reads them
        # from cache, and its y written into place while still in cache (a torch.cat of the blocks' y at
        # the end took 5 ms of a 25 ms scan, reading them back from memory). A last, shorter block runs
        # uncompiled, so that every length reuses the one compiled pair of steps.
        y = torch.empty_like(u)
        for start in range(0, length, block):
            steps = (..., slice(start, start + block))
            y[steps], x = scan(steps, x, compile_steps=start + block <= length)
    else:
        y, x = scan((...,), x)
    return (y, x.transpose(-1, -2).reshape(batch, dim, d_state)) if return_last_state else y


@cache
def _mamba_selective_scan_fn() -> Callable[..., ScanResult] | None:
    """mamba-ssm's fused CUDA scan, or None where mamba-ssm (or its compiled kernel) is not installed."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


@torch.library.custom_op("seld_edge::selective_scan", mutates_args=())
def _scan_node(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> torch.Tensor:
    """The scan as one opaque node, for export only: torch.export records it without tracing through
    the chunked form, and export/selective_scan_onnx.py translates it into ONNX (either flavour)."""
    return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


@_scan_node.register_fake
def _scan_node_shape(u: torch.Tensor, *_: object) -> torch.Tensor:
    return torch.empty_like(u)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    impl: str = "auto",
) -> ScanResult:
    """Selective scan with mamba-ssm's ``selective_scan_fn`` arguments and results.

    u, delta, z: (batch, D, L); A: (D, N), negative; B, C: (batch, G, N, L) with G dividing D;
    D, delta_bias: (D,). Returns y (batch, D, L) in u's dtype, and with ``return_last_state`` also the
    state after the last step, (batch, D, N) in fp32. ``impl="auto"`` takes mamba-ssm's CUDA kernel
    when it imports and u is on a GPU, the chunked form otherwise; it never picks ``compiled``, whose
    first call for each shape spends about 20 s compiling.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    if torch.compiler.is_exporting():
        # One node for the exporter to translate, instead of hundreds of traced ops: tracing the chunked
        # form with a symbolic length took most of a two-minute FFMamba export, in sympy.
        _check_shapes(u, delta, A, B, C, D, z, delta_bias)
        if return_last_state:
            raise SeldEdgeError("an exported selective scan returns y only, not the last state")
        return _scan_node(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if impl == "reference":
        return selective_scan_reference(*args)
    if impl == "compiled":
        return selective_scan_chunked(*args, compiled=True)
    kernel = _mamba_selective_scan_fn() if impl in ("auto", "cuda") else None
    if impl == "cuda":
        if kernel is None:
            raise SeldEdgeError("impl='cuda' needs mamba-ssm with its CUDA kernel: pip install 'seld-edge[mamba]'")
        if not u.is_cuda:
            raise SeldEdgeError(f"impl='cuda' needs CUDA tensors, got u on {u.device}")
    if kernel is not None and u.is_cuda:
        _check_shapes(u, delta, A, B, C, D, z, delta_bias)
        result = kernel(*args)
        if return_last_state:
            y, last_state = result
            return y, last_state.float()
        return result
    return selective_scan_chunked(*args)

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
  and on a CPU across cache-sized blocks of time; for CPU and GPU training (with a backward pass of
  its own that recomputes the states instead of keeping them), and written in ONNX ops for export.
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
# Blocks when training on a CPU (autograd recording; see _RecomputingScan): about 1 M state values per
# block (batch x D x N x steps), and at most 128 steps. The backward pass works on some six such tensors
# per block, and smaller ones stay in cache. Forward and backward of one scan, one core, medians of 3
# alternating runs, blocks of 64/128/256/512/1024 steps: batch 8 at FFMamba's first stage (D 256, L
# 12800) 6.6/6.3/7.2/8.9/9.7 s, second stage (D 512, L 3200) 4.6/4.8/4.7/5.7/5.9 s; batch 2, first stage,
# blocks of 128/256/512/1024: 0.80/0.82/0.91/1.01 s; batch 8, last stage (D 2048, L 200), 16/32/64/208:
# 0.67/0.74/0.67/1.10 s.
CPU_TRAINING_BLOCK_VALUES = 1 << 20
CPU_TRAINING_BLOCK_STEPS = 128
# Time steps per block when training on a GPU. The backward pass holds about six block-sized state
# tensors at a time (batch x D x N x block floats each): 2048 steps at FFMamba's first stage and batch
# 60 is 0.5 GB each. Not measured on a GPU: one block of the whole sequence may run faster where memory allows.
GPU_TRAINING_BLOCK_SIZE = 2048

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


def _grouped_exp2_rates(A: torch.Tensor, groups: int, dtype: torch.dtype) -> torch.Tensor:
    """A (D, N) as A log2(e) laid out (G, N, H) like the state, contiguous so products with it are too.

    In base 2: exp(delta A) = exp2(delta A log2(e)), and PyTorch's exp2 runs 3x faster than its exp on
    CPU (13 M values, one core: 2.9 vs 8.9 ms) at 2.6e-7 relative error.
    """
    dim, d_state = A.shape
    return (A.to(dtype) * math.log2(math.e)).view(groups, dim // groups, d_state).transpose(1, 2).contiguous()


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


def _chunk_entries(
    decay: tuple[torch.Tensor, ...], drive: tuple[torch.Tensor, ...], chunk_decay: torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The state entering each chunk (n, batch, G, N, H) and the block's last state, from its K steps'
    decays and drives (each (n, batch, G, N, H), all chunks at once) and each chunk's whole decay.

    Each chunk runs from a zero state to its end, one whole-tensor step at a time; the chunk ends are
    carried across chunks from x by ``_linear_scan``.
    """
    end = drive[0]
    for decay_k, drive_k in zip(decay[1:], drive[1:], strict=True):
        end = torch.addcmul(drive_k, decay_k, end)
    ends = _linear_scan(chunk_decay, end, x, len(decay))
    return torch.cat([x[None], ends[:-1]]), ends[-1]


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
    2. the state entering each chunk (``_chunk_entries``), with each chunk's whole decay
       exp2(A2 * sum of its deltas), whose exponent is never positive;
    3. each chunk again from its entering state, reading out C . x_t as it goes.
    Running the chunk twice costs less than storing the decay since the chunk began for every step.
    """
    n_chunks = dt.shape[0] // chunk
    dt, du, B, C = (t.view(n_chunks, chunk, *t.shape[1:]) for t in (dt, du, B, C))
    # Per-step views through unbind: under autograd (the export traces this function) its backward
    # stacks the steps' gradients once, where indexing each step fills a whole-block tensor per step.
    decay = torch.exp2(dt * A2).unbind(1)  # K x (n, batch, G, N, H)
    drive = (du * B).unbind(1)
    state, last = _chunk_entries(decay, drive, torch.exp2(dt.sum(1) * A2), x)
    ys = []
    for decay_k, drive_k, C_k in zip(decay, drive, C.unbind(1), strict=True):
        state = torch.addcmul(drive_k, decay_k, state)
        ys.append((state * C_k).sum(-2))
    return torch.stack(ys, dim=1).flatten(0, 1), last


def _block_gradients(
    dt: torch.Tensor,
    du: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    gy: torch.Tensor,
    A2: torch.Tensor,
    x: torch.Tensor,
    h: torch.Tensor,
    chunk: int,
) -> tuple[torch.Tensor, ...]:
    """The backward pass over one block of ``_scan_block``'s inputs (and gy, (steps, batch, G, 1, H)), entered
    with state x and, from the right, with the adjoint h already decayed by the next block's first step.

    Every state x_t is recomputed as in ``_scan_block`` and kept; the adjoints h_t run the same chunked
    method backwards in time: within each chunk from its last step down from zero, the chunk starts'
    adjoints carried across chunks (right to left) by ``_linear_scan``, then each chunk again from the
    adjoint entering it from the right. Returns, each in its input's shape: the gradient for dt
    through the decays (the caller adds du = dt u's part), for du, B and C; the block's part of the
    gradient for A laid out as A2 (G, N, H), in A's units (not A2's); and the adjoint leaving the block
    to the left, decayed by its first step.
    """
    n_chunks = dt.shape[0] // chunk
    dt, du, B, C, gy = (t.view(n_chunks, chunk, *t.shape[1:]) for t in (dt, du, B, C, gy))
    decay = torch.exp2(dt * A2)  # (n, K, batch, G, N, H)
    drive = du * B
    decays, drives = decay.unbind(1), drive.unbind(1)
    # Forward states, each step written in place (a stack of the steps would copy them all again).
    states = torch.empty_like(decay)
    state, _ = _chunk_entries(decays, drives, torch.exp2(dt.sum(1) * A2), x)
    for k in range(chunk):
        state = torch.addcmul(drives[k], decays[k], state, out=states[:, k])
    # Adjoints: h_t = C_t gy_t + exp2(dt_(t+1) A2) h_(t+1), right to left.
    pull = gy * C
    pulls = pull.unbind(1)
    end = pulls[-1]
    for k in range(chunk - 2, -1, -1):
        end = torch.addcmul(pulls[k], decays[k + 1], end)
    # A chunk start's adjoint reaches the previous chunk's start through the chunk's decays after its
    # first step and the next chunk's first: exp2(A2 * (sum of those deltas)); the last chunk's next
    # decay is already in h.
    following = torch.cat([dt[1:, 0], torch.zeros_like(dt[:1, 0])])
    chunk_decay = torch.exp2((dt[:, 1:].sum(1) + following) * A2)
    starts = _linear_scan(chunk_decay.flip(0), end.flip(0), h, chunk).flip(0)
    entering = torch.cat([decay[1:, 0] * starts[1:], h[None]])
    adjoints = torch.empty_like(decay)
    state = torch.add(pulls[-1], entering, out=adjoints[:, -1])
    for k in range(chunk - 2, -1, -1):
        state = torch.addcmul(pulls[k], decays[k + 1], state, out=adjoints[:, k])
    q = adjoints * (states - drive)  # h_t exp(delta_t A) x_(t-1)
    d_dt = (q * A2).sum(-2, keepdim=True) * math.log(2.0)
    d_A = (q * dt).sum((0, 1, 2))
    d_du = (adjoints * B).sum(-2, keepdim=True)
    # Sums over a group's channels, the last axis, as matrix products: 1.5-2x faster than product and sum.
    d_B = adjoints @ du.transpose(-1, -2)
    d_C = states @ gy.transpose(-1, -2)
    h = decay[0, 0] * adjoints[0, 0]
    return *(t.flatten(0, 1) for t in (d_dt, d_du, d_B, d_C)), d_A, h


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


def _write_input_layout(out: torch.Tensor, steps: slice, t: torch.Tensor) -> None:
    """out[..., steps] = t, t time-major (padded steps, *out's leading shape) from ``_time_major``'s layout:
    the transpose of one 2-D matrix, as ``_time_major`` copies it."""
    rows = out.view(-1, out.shape[-1])[:, steps]
    rows.copy_(t.reshape(t.shape[0], -1)[: rows.shape[1]].t())


class _RecomputingScan(torch.autograd.Function):
    """The chunked scan's y = C . x (before the D skip and z gate) and last state, for training: autograd
    keeps only the inputs, where recording the chunked steps kept about four state-sized tensors per
    step (batch x D x N x L floats each: 52 MB per sample for FFMamba's first-stage scan on a 5 s chunk).

    Both passes go block by block, each block's inputs made time-major just before it runs and its
    results written back in place, so that a block's tensors stay in cache. The backward pass
    recomputes a block's states from the state entering it (kept by the forward pass), last block
    first, and runs the adjoint recurrence backwards in time by the same chunked method: with
    h_t = dLoss/dx_t,

        h_t = C_t gy_t + exp(delta_(t+1) A) h_(t+1),

    the forward recurrence in reversed time, with the decays shifted by one step and drive gy_t C_t in
    place of delta_t u_t B_t. Then, with q_t = h_t exp(delta_t A) x_(t-1) = h_t (x_t - delta_t B_t u_t):
    d(delta_t u_t) = sum_n h_t B_t, dB_t = sum over the group's channels of h_t delta_t u_t,
    dC_t = sum over the group's channels of gy_t x_t, d delta_t += sum_n q_t A, dA = sum over batch and
    time of q_t delta_t (``_block_gradients``).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        u: torch.Tensor,
        delta: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        delta_bias: torch.Tensor | None,
        delta_softplus: bool,
        chunk: int,
        block: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        A2 = _grouped_exp2_rates(A, B.shape[1], _state_dtype(u.dtype))
        y = u.new_empty(u.shape, dtype=A2.dtype)
        x = A2.new_zeros((u.shape[0], *A2.shape))
        entering = []
        for start in range(0, u.shape[2], block):
            steps = slice(start, start + block)
            entering.append(x)
            inputs = _time_major_inputs(u[..., steps], delta[..., steps], B[..., steps], C[..., steps], delta_bias,
                                        delta_softplus, chunk)  # fmt: skip
            y_steps, x = _scan_block(*inputs, A2, x, chunk)
            _write_input_layout(y, steps, y_steps)
        ctx.save_for_backward(u, delta, A, B, C, delta_bias, torch.stack(entering))
        ctx.delta_softplus, ctx.chunk, ctx.block = delta_softplus, chunk, block
        return y, x

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, gy: torch.Tensor, g_last: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        u, delta, A, B, C, delta_bias, entering = ctx.saved_tensors
        chunk, block, softplus = ctx.chunk, ctx.block, ctx.delta_softplus
        A2 = _grouped_exp2_rates(A, B.shape[1], _state_dtype(u.dtype))
        gy = gy.contiguous()
        h = torch.zeros_like(entering[0]) if g_last is None else g_last.to(A2.dtype)
        d_u, d_delta, d_B, d_C = (t.new_empty(t.shape, dtype=A2.dtype) for t in (u, delta, B, C))
        d_A, d_bias = torch.zeros_like(A2), A2.new_zeros(u.shape[1])
        starts = range(0, u.shape[2], block)
        for start, x in zip(reversed(starts), reversed(entering.unbind(0)), strict=True):
            steps = slice(start, start + block)
            u_s, delta_s, B_s, C_s = (t[..., steps] for t in (u, delta, B, C))
            dt, du, B_t, C_t = _time_major_inputs(u_s, delta_s, B_s, C_s, delta_bias, softplus, chunk)
            gy_t = _time_major(gy[..., steps], dt.shape[1:], dt.shape[0])
            d_dt, d_du, d_B_t, d_C_t, d_A_block, h = _block_gradients(dt, du, B_t, C_t, gy_t, A2, x, h, chunk)
            d_dt.addcmul_(d_du, _time_major(u_s.to(A2.dtype), dt.shape[1:], dt.shape[0]))  # du = dt * u
            if softplus:
                d_dt.mul_(torch.expm1(-dt).neg_())  # softplus'(v) = sigmoid(v) = 1 - exp(-softplus(v))
            d_A += d_A_block
            d_bias += d_dt.sum((0, 1)).flatten()
            for out, grad in ((d_delta, d_dt), (d_u, d_du.mul_(dt)), (d_B, d_B_t), (d_C, d_C_t)):
                _write_input_layout(out, steps, grad)
        d_A = d_A.transpose(1, 2).reshape(A.shape).to(A.dtype)
        d_bias = None if delta_bias is None else d_bias.to(delta_bias.dtype)
        grads = (d_u.to(u.dtype), d_delta.to(delta.dtype), d_A, d_B.to(B.dtype), d_C.to(C.dtype), d_bias)
        return *grads, None, None, None


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
    other device), which wants the most work per launch. Decays are only ever multiplied, never
    divided, so long sequences cannot overflow where exp(cumsum(delta A)) and its inverse would.
    export/selective_scan_onnx.py writes the same computation, one block, in ONNX ops.

    Where autograd records, ``_RecomputingScan`` runs the blocks (about 1 M state values each on a
    CPU, GPU_TRAINING_BLOCK_SIZE steps on a GPU) and keeps only the inputs for the backward pass,
    which recomputes each block's states: autograd keeps 0.27 GB per 5 s chunk for an FFMamba training
    step instead of 0.96 GB (0.72 GB of it the scans' steps), and the scans run 1.5x faster.

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
    recording = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, delta_bias)
    )
    if compiled and recording:
        raise ValueError("compiled=True is for inference: call it under torch.no_grad() or torch.inference_mode()")
    if compiled and u.device.type != "cpu":
        raise ValueError(f"compiled=True is for CPU tensors, got u on {u.device}")
    dtype = _state_dtype(u.dtype)
    batch, dim, length = u.shape
    groups, d_state = B.shape[1], A.shape[1]
    if block_size is not None:
        block = block_size
    elif u.device.type == "cpu" and recording:
        block = min(CPU_TRAINING_BLOCK_STEPS, CPU_TRAINING_BLOCK_VALUES // (batch * dim * d_state))
    elif u.device.type == "cpu":
        block = CPU_BLOCK_SIZE
    else:
        block = GPU_TRAINING_BLOCK_SIZE if recording else length
    block = max(block, 1)
    block = -(-block // chunk_size) * chunk_size
    if recording:
        y, x = _RecomputingScan.apply(u, delta, A, B, C, delta_bias, delta_softplus, chunk_size, block)
        y = _finish(y, u, D, z, dtype)
        return (y, x.transpose(-1, -2).reshape(batch, dim, d_state)) if return_last_state else y
    A2 = _grouped_exp2_rates(A, groups, dtype)  # (G, N, H)
    x = u.new_zeros((batch, *A2.shape), dtype=dtype)

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

"""Mamba's selective scan (mamba-ssm's ``selective_scan_fn`` semantics) in three implementations.

With ``delta = softplus(delta + delta_bias)`` (each part when asked for), every channel d of group
g = d // (D / G) runs the linear recurrence, from x_0 = 0,

    x_t = exp(delta_t A_d) * x_(t-1) + delta_t B_(g,t) u_t        y_t = C_(g,t) . x_t + D_d u_t

and ``y *= silu(z)`` when z is given. State and sums are kept in fp32 (fp64 for fp64 inputs, so that
gradcheck works) whatever the input dtype; y comes back in u's dtype.

- ``reference``: the loop over time, written as mamba-ssm's ``selective_scan_ref``; the definition.
- ``chunked``: the same recurrence as whole-tensor steps: a few steps at a time inside chunks of
  time, every chunk at once, the state carried across chunks by the same method one level up and by
  log-depth doubling at the top; for CPU and GPU training, and written in ONNX ops for export.
- ``cuda``: mamba-ssm's fused kernel when it is installed and the tensors are on a GPU.
"""

from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F

from seld_edge.errors import SeldEdgeError

# Steps per chunk and levels of chunking (chunks of chunks) before the doubling scan; on one CPU core at
# (D 128, N 16, G 4, L 6400) K = 4 / 8 / 16 took 100 / 54 / 70 ms with one level.
CHUNK_SIZE = 8
CHUNK_LEVELS = 2

IMPLS = ("auto", "reference", "chunked", "cuda")


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
        y = y + u.to(dtype) * D.to(dtype)[:, None]
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


def _shift_in(x: torch.Tensor, steps: int, fill: float) -> torch.Tensor:
    """x moved ``steps`` places later along dim 0, the first rows set to ``fill`` (any steps, even > len)."""
    length = x.shape[0]
    steps = min(steps, length)
    return torch.cat([x.new_full((steps, *x.shape[1:]), fill), x[: length - steps]])


def _doubling_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All x_t of x_t = a_t x_(t-1) + b_t along dim 0 from x_(-1) = 0, in log2(length) whole-tensor steps.

    After step j every (a_t, b_t) holds the composition of the last 2^j steps ending at t (Hillis and
    Steele), so no product of more than 2^j decays is ever formed and nothing overflows.
    """
    n_steps = max(a.shape[0] - 1, 0).bit_length()
    for j in range(n_steps):
        b = b + a * _shift_in(b, 2**j, 0.0)
        if j < n_steps - 1:
            a = a * _shift_in(a, 2**j, 1.0)
    return b


def _chunked_linear_scan(a: torch.Tensor, b: torch.Tensor, chunk: int, levels: int) -> torch.Tensor:
    """All x_t of x_t = a_t x_(t-1) + b_t along dim 0 from x_(-1) = 0, time cut in chunks of ``chunk`` steps.

    The chunk's steps run one after another (``chunk`` whole-tensor steps, every chunk at once) from a
    zero state, keeping the running product of the decays; the states at the chunk ends then form the
    same recurrence, one step per chunk, solved the same way ``levels - 1`` more times and by doubling
    at the top; finally each chunk adds its entering state times the running decay. The padding
    steps (a = 1, b = 0) leave the state as it was, so the last row is the true last state.
    """
    if levels == 0:
        return _doubling_scan(a, b)
    length, rest = a.shape[0], a.shape[1:]
    n_chunks = (length + chunk - 1) // chunk
    pad = n_chunks * chunk - length
    a = torch.cat([a, a.new_ones((pad, *rest))]).view(n_chunks, chunk, *rest)
    b = torch.cat([b, b.new_zeros((pad, *rest))]).view(n_chunks, chunk, *rest)
    states, decays = [b[:, 0]], [a[:, 0]]
    for k in range(1, chunk):
        states.append(a[:, k] * states[-1] + b[:, k])
        decays.append(a[:, k] * decays[-1])
    ends = _chunked_linear_scan(decays[-1], states[-1], chunk, levels - 1)
    entering = _shift_in(ends, 1, 0.0)
    x = torch.stack([s + d * entering for s, d in zip(states, decays, strict=True)], dim=1)
    return x.view(n_chunks * chunk, *rest)[:length]


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
) -> ScanResult:
    """The scan as whole-tensor steps over chunks of ``chunk_size`` time steps, all chunks at once.

    The recurrence is first-order linear in the state, x_t = a_t x_(t-1) + b_t with a_t =
    exp(delta_t A) <= 1 and b_t = delta_t B_t u_t per (channel, state) pair, so it is solved by
    ``_chunked_linear_scan`` over time-major tensors (each step a contiguous slice). Decays are only
    ever multiplied, never divided, so long sequences cannot overflow where exp(cumsum(delta A)) and
    its inverse would. export/selective_scan_onnx.py writes the same computation in ONNX ops.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    dtype = _state_dtype(u.dtype)
    batch, dim, length = u.shape
    groups, d_state = B.shape[1], A.shape[1]
    per_group = dim // groups
    n_chunks = (length + chunk_size - 1) // chunk_size
    pad = n_chunks * chunk_size - length

    def chunked_time_major(t: torch.Tensor, *shape: int) -> torch.Tensor:
        """(*shape, L) -> (chunk step k, chunk c, *shape), zero-padded: each step's slice is contiguous."""
        t = torch.cat([t.to(dtype).reshape(*shape, length), t.new_zeros((*shape, pad), dtype=dtype)], dim=-1)
        return t.view(*shape, n_chunks, chunk_size).permute(-1, -2, *range(len(shape))).contiguous()

    # A padded step has delta = 0: decay 1 and no drive, so it leaves the state as it was. The state is
    # laid out (..., G, N, H): the channels of a group innermost, so the broadcasts run over them.
    delta = _prepare_delta(delta, delta_bias, delta_softplus, dtype)
    dt = chunked_time_major(delta, batch, groups, per_group)[:, :, :, :, None]  # (K, n, batch, G, 1, H)
    du = dt * chunked_time_major(u, batch, groups, per_group)[:, :, :, :, None]
    B_t = chunked_time_major(B, batch, groups, d_state)[..., None]  # (K, n, batch, G, N, 1)
    C_t = chunked_time_major(C, batch, groups, d_state)[..., None]
    A_g = A.to(dtype).view(groups, per_group, d_state).transpose(1, 2)  # (G, N, H)
    # Inside a chunk, from a zero state: the states, and the decay since the chunk began,
    # exp(A * cumsum(delta)), whose exponent is never positive.
    since_start = torch.exp(torch.cumsum(dt, dim=0) * A_g)  # (K, n, batch, G, N, H)
    states = [du[0] * B_t[0]]
    for k in range(1, chunk_size):
        states.append(torch.exp(dt[k] * A_g) * states[-1] + du[k] * B_t[k])
    # The state at each chunk's end, once the earlier chunks are carried in, then the one entering it.
    ends = _chunked_linear_scan(since_start[-1], states[-1], chunk_size, CHUNK_LEVELS - 1)
    entering = _shift_in(ends, 1, 0.0)
    y = torch.stack([((s + since_start[k] * entering) * C_t[k]).sum(-2) for k, s in enumerate(states)], dim=1)
    y = y.view(n_chunks * chunk_size, batch, dim)[:length].permute(1, 2, 0)
    y = _finish(y, u, D, z, dtype)
    return (y, ends[-1].transpose(-1, -2).reshape(batch, dim, d_state)) if return_last_state else y


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
    when it imports and u is on a GPU, the chunked form otherwise.
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

"""Mamba's selective scan (mamba-ssm's ``selective_scan_fn`` semantics) in three implementations.

With ``delta = softplus(delta + delta_bias)`` (each part when asked for), every channel d of group
g = d // (D / G) runs the linear recurrence, from x_0 = 0,

    x_t = exp(delta_t A_d) * x_(t-1) + delta_t B_(g,t) u_t        y_t = C_(g,t) . x_t + D_d u_t

and ``y *= silu(z)`` when z is given. State and sums are kept in fp32 (fp64 for fp64 inputs, so that
gradcheck works) whatever the input dtype; y comes back in u's dtype.

- ``reference``: the loop over time, written as mamba-ssm's ``selective_scan_ref``; the definition.
- ``chunked``: the same sums in parallel inside chunks of time (cumsum, masked exp, matmul) with the
  state carried from chunk to chunk; for CPU and for ONNX export (no data-dependent control flow,
  CumSum over a constant axis, no Loop node once traced).
- ``cuda``: mamba-ssm's fused kernel when it is installed and the tensors are on a GPU.
"""

from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F

from seld_edge.errors import SeldEdgeError

# The masked decay matrix is (D, N, K, K) per chunk, so the work grows as L * K: on one CPU core
# (D 64, N 16, G 4, L 6400) K = 8 / 16 / 32 / 64 / 128 took 0.16 / 0.28 / 0.67 / 1.47 / 7.2 s.
# The smallest chunk is the fastest here; an export may pick a larger one to keep the graph small.
CHUNK_SIZE = 8

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
    """The scan as matrix products inside chunks of ``chunk_size`` steps, the state carried between chunks.

    Inside a chunk, with S_t the cumulative sum of delta up to and including step t, the decay from
    step s to step t >= s is exp(A (S_t - S_s)): the exponent is never positive (A < 0, delta >= 0),
    so it neither overflows nor loses the small terms, unlike exp(A S_t) * exp(-A S_s). Entries with
    s > t are set to -inf before the exp, so they are exactly 0 and carry no gradient. The state
    entering the chunk decays by exp(A S_t). Time is zero-padded to whole chunks: a padded step has
    delta = 0, so it neither decays nor drives the state, and the last state is the true one.
    Only shapes steer the Python control flow, so the function traces for export.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    dtype = _state_dtype(u.dtype)
    batch, dim, length = u.shape
    groups, d_state = B.shape[1], A.shape[1]
    per_group = dim // groups
    chunk = min(chunk_size, length)
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length

    delta_p = F.pad(_prepare_delta(delta, delta_bias, delta_softplus, dtype), (0, pad))
    delta_p = delta_p.view(batch, groups, per_group, n_chunks * chunk)
    drive = delta_p * F.pad(u.to(dtype), (0, pad)).view(batch, groups, per_group, n_chunks * chunk)
    B_p = F.pad(B.to(dtype), (0, pad))[:, :, None]  # (batch, G, 1, N, L'): shared by a group's channels
    C_p = F.pad(C.to(dtype), (0, pad))[:, :, None]
    A_g = A.to(dtype).view(groups, per_group, d_state, 1)
    future = ~torch.ones(chunk, chunk, dtype=torch.bool, device=u.device).tril()  # s > t

    x = u.new_zeros((batch, groups, per_group, d_state), dtype=dtype)
    ys = []
    for c in range(n_chunks):
        steps = slice(c * chunk, (c + 1) * chunk)
        cum = torch.cumsum(delta_p[..., steps], dim=-1)  # (batch, G, H, K)
        gap = (cum[..., :, None] - cum[..., None, :])[:, :, :, None]  # (batch, G, H, 1, t, s)
        decay = torch.exp((gap * A_g[..., None]).masked_fill(future, float("-inf")))  # (batch, G, H, N, t, s)
        drive_n = drive[..., None, steps] * B_p[..., steps]  # (batch, G, H, N, s)
        states = (decay @ drive_n[..., None]).squeeze(-1) + torch.exp(A_g * cum[:, :, :, None]) * x[..., None]
        ys.append((states * C_p[..., steps]).sum(dim=3))  # (batch, G, H, K)
        x = states[..., -1]
    y = torch.cat(ys, dim=-1).reshape(batch, dim, n_chunks * chunk)[..., :length]
    y = _finish(y, u, D, z, dtype)
    return (y, x.reshape(batch, dim, d_state)) if return_last_state else y


@cache
def _mamba_selective_scan_fn() -> Callable[..., ScanResult] | None:
    """mamba-ssm's fused CUDA scan, or None where mamba-ssm (or its compiled kernel) is not installed."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


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

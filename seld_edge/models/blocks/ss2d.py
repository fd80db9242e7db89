"""VMamba's 2D selective scan (SS2D) and the block built around it (docs/models.md).

A feature map (batch, T, F, C) is read as four sequences of T * F positions: row-major (time-major,
frequency fastest), column-major, and both reversed. One selective scan runs all four at once, the
directions stacked as channel groups (D = 4 * d_inner, G = 4, so each direction has its own B and C),
and the four outputs are folded back onto the map and summed. The local mixer that precedes the scan
is VMamba's 3x3 depthwise conv or, in FFMamba, the MSF module; it is passed in.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from seld_edge.ops import selective_scan

DIRECTIONS = 4


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """(batch, d, T, F) -> (batch, 4, d, T * F): row-major, column-major and both reversed."""
    rows = x.flatten(2)
    cols = x.transpose(2, 3).flatten(2)
    return torch.stack([rows, cols, rows.flip(-1), cols.flip(-1)], dim=1)


def cross_merge(y: torch.Tensor, n_time: int, n_freq: int) -> torch.Tensor:
    """(batch, 4, d, T * F) -> (batch, d, T, F): each direction put back in place, then summed."""
    # unbind, not y[:, k]: the backward of indexing fills a zero tensor of y's size per direction.
    rows, cols, rows_reversed, cols_reversed = y.unbind(1)
    rows = rows + rows_reversed.flip(-1)
    cols = cols + cols_reversed.flip(-1)
    cols = cols.unflatten(-1, (n_freq, n_time)).transpose(2, 3)
    return rows.unflatten(-1, (n_time, n_freq)) + cols


class SS2D(nn.Module):
    """in_proj -> (x, z); x -> local mixer -> SiLU -> 4-direction selective scan -> merge -> LayerNorm,
    times SiLU(z) -> out_proj. Channels-last in and out, (batch, T, F, dim).

    Initialisation follows VMamba/Mamba: A = -[1..N] per channel, D = 1, dt log-uniform in
    [dt_min, dt_max] through the inverse softplus of the dt bias.
    """

    def __init__(
        self,
        dim: int,
        d_state: int,
        ssm_ratio: float,
        local_mixer: Callable[[int], nn.Module],
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        d_inner = int(ssm_ratio * dim)
        self.d_inner, self.d_state = d_inner, d_state
        self.dt_rank = math.ceil(dim / 16)
        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=False)
        self.local = local_mixer(d_inner)
        self.x_proj = nn.Parameter(torch.empty(DIRECTIONS, self.dt_rank + 2 * d_state, d_inner))
        self.dt_proj = nn.Parameter(torch.empty(DIRECTIONS, d_inner, self.dt_rank))
        self.dt_bias = nn.Parameter(torch.empty(DIRECTIONS, d_inner))
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(DIRECTIONS * d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(DIRECTIONS * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, dim, bias=False)
        bound = d_inner**-0.5
        nn.init.uniform_(self.x_proj, -bound, bound)
        nn.init.uniform_(self.dt_proj, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(DIRECTIONS, d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp_min(dt_floor)
        with torch.no_grad():
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus(bias) = dt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_time, n_freq = x.shape[1:3]
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.local(x.permute(0, 3, 1, 2)))  # (batch, d_inner, T, F)
        xs = cross_scan(x)  # (batch, 4, d_inner, L)
        # Per-direction projections as broadcast matrix products, which keep the (batch, 4, channels, L)
        # layout: the einsum form permuted its operands and result (forward and backward 3x slower).
        projected = self.x_proj @ xs  # (batch, 4, dt_rank + 2 d_state, L)
        dts, Bs, Cs = projected.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = self.dt_proj @ dts  # (batch, 4, d_inner, L)
        y = selective_scan(
            xs.flatten(1, 2),
            dts.flatten(1, 2),
            -torch.exp(self.A_log),
            Bs,
            Cs,
            D=self.D,
            delta_bias=self.dt_bias.flatten(),
            delta_softplus=True,
        )
        y = cross_merge(y.unflatten(1, (DIRECTIONS, self.d_inner)), n_time, n_freq)
        y = self.out_norm(y.permute(0, 2, 3, 1)) * F.silu(z)
        return self.out_proj(y)


class VSSBlock(nn.Module):
    """x + SS2D(LN(x)), then x + MLP(LN(x)), on channels-first maps (batch, dim, T, F)."""

    def __init__(
        self, dim: int, d_state: int, ssm_ratio: float, mlp_ratio: float, local_mixer: Callable[[int], nn.Module]
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ss2d = SS2D(dim, d_state, ssm_ratio, local_mixer)
        hidden = int(mlp_ratio * dim)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = x + self.ss2d(self.norm(x))
        x = x + self.mlp(x)
        return x.permute(0, 3, 1, 2)


def depthwise_conv3x3(channels: int) -> nn.Module:
    """VMamba's local mixer: a 3x3 depthwise convolution."""
    return nn.Conv2d(channels, channels, 3, padding=1, groups=channels)

"""Cross-stitch unit (Misra et al. 2016): soft parameter sharing between two task branches.

EINV2 (Cao et al. 2021) and MFF-EINV2 keep a SED branch and a DOA branch and let them exchange
information through these units: every channel c of the two branch outputs a_c, b_c is remixed by its
own learnable 2x2 matrix,

    a'_c = w_c[0, 0] a_c + w_c[0, 1] b_c
    b'_c = w_c[1, 0] a_c + w_c[1, 1] b_c

so each branch decides per channel how much of the other to take in. Both outputs are computed from
the unmixed inputs, as the unit is defined (the EINV2 public code mixes b from the already mixed a).
"""

import torch
from torch import nn


class CrossStitch(nn.Module):
    """Per-channel 2x2 mixing of two branches with the same shape.

    ``channel_dim`` is where the channels sit: 1 for conv maps (B, C, T, F), -1 for sequences (B, T, C).
    The weights start uniform in ``init_range``, U(0.1, 0.9) as in the EINV2 code, so at the start each
    branch already takes in part of the other.
    """

    def __init__(self, channels: int, channel_dim: int = 1, init_range: tuple[float, float] = (0.1, 0.9)) -> None:
        super().__init__()
        self.channel_dim = channel_dim
        self.weight = nn.Parameter(torch.empty(channels, 2, 2).uniform_(*init_range))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = [1] * a.ndim
        shape[self.channel_dim] = self.weight.shape[0]
        w = self.weight.reshape(-1, 4).t().reshape(4, *shape)  # w[2 * row + col] broadcasts over a
        return w[0] * a + w[1] * b, w[2] * a + w[3] * b

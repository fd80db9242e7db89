"""FFMamba's multi-scale fusion (MSF) module, the local mixer of its MSFVSS blocks (paper section 3.3).

Two parts. First, grouped attention (the channels cut into ``groups`` groups of C/G, each group handled
alike): per-group attention along time and along frequency from 1D average pools fused by a 1x1
conv, and a 3x3 conv branch; each branch's global context, through a softmax over its channels,
weighs the other branch's map, and the sum, through a sigmoid, reweights the input. Second, 3x3 and
5x5 depthwise convolutions of that map, mixed per channel by weights from a small FC on their pooled
sum, softmax-normalised across the two scales.
"""

import torch
import torch.nn.functional as F
from torch import nn


class MSF(nn.Module):
    def __init__(self, channels: int, groups: int = 32, reduction: int = 4) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"MSF needs channels ({channels}) divisible by its groups ({groups})")
        self.groups = groups
        per_group = channels // groups
        self.pool_conv = nn.Conv2d(per_group, per_group, 1)
        self.local_conv = nn.Conv2d(per_group, per_group, 3, padding=1)
        self.norm = nn.GroupNorm(per_group, per_group)
        self.scale3 = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.scale5 = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        hidden = max(channels // reduction, 8)
        self.scale_weights = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, 2 * channels))

    def _local_conv(self, x: torch.Tensor) -> torch.Tensor:
        """``local_conv`` on every group of x (batch, channels, T, F), as one grouped convolution of its
        kernel repeated per group: the same result as running it on the groups stacked as a batch of
        C/G-channel maps, where oneDNN is slow (2.5x for forward and backward at FFMamba's first stage)."""
        weight, bias = self.local_conv.weight, self.local_conv.bias
        return F.conv2d(x, weight.repeat(self.groups, 1, 1, 1), bias.repeat(self.groups), padding=1, groups=self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, n_time, n_freq = x.shape
        g = x.reshape(batch * self.groups, channels // self.groups, n_time, n_freq)
        # Attention along time and frequency from 1D pools, fused by one 1x1 conv.
        pooled = torch.cat([g.mean(3, keepdim=True), g.mean(2, keepdim=True).transpose(2, 3)], dim=2)
        pooled = self.pool_conv(pooled)
        along_time, along_freq = pooled[:, :, :n_time], pooled[:, :, n_time:].transpose(2, 3)
        attended = self.norm(g * along_time.sigmoid() * along_freq.sigmoid())
        local = self._local_conv(x).reshape(g.shape)
        # Cross-branch spatial attention: each branch's channel softmax weighs the other's map.
        spatial = torch.einsum("nc,nctf->ntf", attended.mean((2, 3)).softmax(-1), local) + torch.einsum(
            "nc,nctf->ntf", local.mean((2, 3)).softmax(-1), attended
        )
        z = (g * spatial.sigmoid()[:, None]).reshape(batch, channels, n_time, n_freq)
        # Multi-scale depthwise fusion with adaptive per-channel weights.
        small, large = self.scale3(z), self.scale5(z)
        weights = self.scale_weights((small + large).mean((2, 3))).view(batch, 2, channels, 1, 1).softmax(1)
        return small * weights[:, 0] + large * weights[:, 1]

"""Asymmetric convolutions: GLFER-Net's local feature extraction (LFE) unit (GLFER-Net section 3.2.3).

After ACNet (Ding et al. 2019): a 1 x 3 convolution (across frequency, with maps laid out (C, T, F))
followed by a 3 x 1 (across time), plus the same pair in the other order, then BN and GELU. Each
path is a rank-1 3 x 3 kernel per channel pair, so the unit sees a full 3 x 3 neighbourhood, corners
included, at the cost of two 1 x 3 + 3 x 1 pairs. The convolutions have no bias (BN follows).
"""

import torch
from torch import nn


class LFE(nn.Module):
    """BN and GELU of (3x1 after 1x3)(x) + (1x3 after 3x1)(x); maps (B, C_in, T, F) to (B, C_out, T, F)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()

        def conv(c_in: int, kernel: tuple[int, int]) -> nn.Conv2d:
            return nn.Conv2d(c_in, out_channels, kernel, padding=(kernel[0] // 2, kernel[1] // 2), bias=False)

        self.freq_then_time = nn.Sequential(conv(in_channels, (1, 3)), conv(out_channels, (3, 1)))
        self.time_then_freq = nn.Sequential(conv(in_channels, (3, 1)), conv(out_channels, (1, 3)))
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.freq_then_time(x) + self.time_then_freq(x)))

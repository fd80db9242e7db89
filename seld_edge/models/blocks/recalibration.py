"""GLFER-Net's feature recalibration (FR) module (section 3.3): ECA-style attention along channel, time, frequency.

For a map M (B, C, T, F) each branch pools M over the two other axes (GLFER-Net eq. 7-9: g_c over
T x F, g_t over C x F, g_f over C x T), slides a 1D convolution of kernel 3 along its own axis (as ECA,
Wang et al. CVPR 2020, does along channels; zero-padded, no bias, as ECA and the paper's A = sigmoid(W g)),
and scales M by the sigmoid of the result along that axis. Pooling over the other axes is written
directly, so no permutation of M is needed.

How the three recalibrated maps combine: the paper sums them ("summed as the ultimate output");
the authors' public code averages them (times 1/3). ``combine="sum"`` (the default) follows the
paper, ``combine="mean"`` the code. With all three convolution weights zero every attention is
sigmoid(0) = 1/2, so FR returns 3/2 M with "sum" and 1/2 M with "mean": that is the identity case
the tests check.
"""

import torch
from torch import nn

COMBINE = ("sum", "mean")


class AxisAttention(nn.Module):
    """ECA along one axis of (B, C, T, F): axis 1 (channel), 2 (time) or 3 (frequency). Returns the
    attention (B, C, 1, 1), (B, 1, T, 1) or (B, 1, 1, F) in (0, 1), ready to broadcast."""

    def __init__(self, axis: int, kernel_size: int = 3) -> None:
        super().__init__()
        if axis not in (1, 2, 3):
            raise ValueError(f"axis must be 1 (channel), 2 (time) or 3 (frequency), got {axis}")
        self.axis = axis
        self.pooled_axes = tuple(a for a in (1, 2, 3) if a != axis)
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean(self.pooled_axes)  # (B, size of the axis)
        a = torch.sigmoid(self.conv(g[:, None, :]))[:, 0]
        shape = [a.shape[0], 1, 1, 1]
        shape[self.axis] = a.shape[1]
        return a.reshape(shape)


class FeatureRecalibration(nn.Module):
    """FR: M * A_c + M * A_t + M * A_f (``combine="sum"``, the paper) or their mean (the public code)."""

    def __init__(self, combine: str = "sum", kernel_size: int = 3) -> None:
        super().__init__()
        if combine not in COMBINE:
            raise ValueError(f"FR combine must be one of {COMBINE}, got {combine!r}")
        self.scale = 1.0 if combine == "sum" else 1.0 / 3.0
        self.branches = nn.ModuleList(AxisAttention(axis, kernel_size) for axis in (1, 2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x * (A_c + A_t + A_f) is the sum of the three recalibrated maps, with one multiplication.
        channel, time, freq = (branch(x) for branch in self.branches)
        return x * ((channel + time + freq) * self.scale)

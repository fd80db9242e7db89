"""MFF-EINV2's multi-scale feature fusion (Mu et al. 2024): TF-convolution modules and the MFF module.

TFCM (the TF-convolution module introduced in MTFAA-Net, Zhang et al. 2022): m blocks, block i
being a 1x1 conv, BN, ReLU; a depthwise 3x3 conv dilated by 2^i in time only, BN, ReLU; a 1x1 conv;
and a residual connection. Dilations 1, 2, ..., 2^(m-1) give multi-grained temporal context: fine for
short events in the first blocks, coarse for long ones in the last (m = 6: 126 frames back). The time
padding is causal (all 2 * 2^i frames before), as in MTFAA; frequency is padded by 1 on both sides.

MFF module: parallel subnetworks at frequency resolutions F, F/4, F/16 (64, 128, 256 channels in the
paper) that exchange information repeatedly, in the manner of HRNet:

    input X (C0, T, F) -------------------------------------------------------------+ x 0.5
      branch F    : TFCM --fuse-- TFCM --fuse-- TFCM --fuse into F-- ReLU -------------+--> out (C0, T, F)
      branch F/4  : FD(X) -> TFCM --fuse-- TFCM --fuse-- TFCM --'
      branch F/16 :                 FD(F/4) -> TFCM --fuse-- TFCM --'
                     stage 1          stage 2        stage 3

A new, coarser branch comes from the frequency downsampling block FD (conv (1, 7), stride (1, 4),
padding (0, 2), 2 groups, BN, ReLU). In stages 1 and 2 every branch takes in every other branch
("each subnetwork merges features from all other subnetworks"); stage 3 fuses the coarse branches
into the full-resolution one only, which restores the input's shape. The exchange units: to a finer
branch a 1x1 conv + BN, then nearest upsampling in frequency; to a coarser one a conv (1, 7) stride
(1, 4) + BN per factor of 4 (ReLU between two of them). The fused sum passes a ReLU. The module's
output is ReLU(full-resolution branch) + 0.5 * its input.

What the paper leaves open and we chose (docs/models.md gives the rest): the branch layout over
the stages, which the paper's text does not spell out. The paper's totals decide between
readings: the rest of MFF-EINV2 holds 23.70 M parameters, which leaves 3.18 M for this module. With
all three branches from the start and a TFCM in every branch at every stage the module would hold
4.37 M (29.4 GMAC per 5 s clip, 85.4 for the whole model against the paper's 84); the HRNet-like
layout drawn above, where the F/16 branch starts in stage 2, holds 3.14 M (-1.3 %; 25.2 GMAC, 81.2
for the whole model), the nearest of the readings we tried, so it is the one built. Exchange convs
have no groups (only FD's are given 2 groups); convs followed by BN have no bias, except inside the
TFCM, whose convs keep MTFAA's biases.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class TFCMBlock(nn.Module):
    """1x1 conv, BN, ReLU, causal depthwise 3x3 conv dilated in time, BN, ReLU, 1x1 conv; plus the input."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.time_padding = 2 * dilation  # a 3-tap kernel dilated by d reaches 2d frames back
        self.pointwise_in = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels), nn.ReLU())
        self.depthwise = nn.Sequential(
            nn.Conv2d(channels, channels, 3, dilation=(dilation, 1), groups=channels),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )
        self.pointwise_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pointwise_in(x)
        y = self.depthwise(F.pad(y, (1, 1, self.time_padding, 0)))  # (freq left, right, time before, after)
        return x + self.pointwise_out(y)


class TFCM(nn.Sequential):
    """``blocks`` TFCM blocks with time dilations 1, 2, 4, ..., 2^(blocks - 1); keeps the shape, causal in time."""

    def __init__(self, channels: int, blocks: int = 6) -> None:
        super().__init__(*(TFCMBlock(channels, 2**i) for i in range(blocks)))


def _freq_conv(in_channels: int, out_channels: int, factor: int, groups: int = 1) -> nn.Conv2d:
    """Conv (1, 7), stride (1, factor), padding (0, 2): F -> F / factor for F divisible by factor (factor 4)."""
    return nn.Conv2d(in_channels, out_channels, (1, 7), stride=(1, factor), padding=(0, 2), groups=groups, bias=False)


class FrequencyDownsample(nn.Sequential):
    """The block that starts a coarser branch: conv (1, 7) stride (1, 4) in 2 groups, BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, factor: int = 4) -> None:
        super().__init__(
            _freq_conv(in_channels, out_channels, factor, groups=2), nn.BatchNorm2d(out_channels), nn.ReLU()
        )


class UpExchange(nn.Module):
    """Exchange unit to a finer branch: 1x1 conv + BN, then each frequency bin repeated ``factor`` times."""

    def __init__(self, in_channels: int, out_channels: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.project = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Nearest upsampling as Expand + Reshape: exact, and no Resize node for TensorRT to interpret.
        y = self.project(x)
        return y.unsqueeze(-1).expand(*y.shape, self.factor).flatten(-2)


def down_exchange(in_channels: int, out_channels: int, steps: int, factor: int = 4) -> nn.Sequential:
    """Exchange unit to a coarser branch: ``steps`` conv (1, 7) stride (1, factor) + BN, ReLU between them.

    The intermediate convs keep the source's channels; the last one maps to the target's (as HRNet).
    """
    layers: list[nn.Module] = []
    for step in range(steps):
        last = step == steps - 1
        width = out_channels if last else in_channels
        layers += [_freq_conv(in_channels, width, factor), nn.BatchNorm2d(width)]
        if not last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Fusion(nn.Module):
    """Exchange between branches: target j receives ReLU(x_j + sum over i != j of unit_ij(x_i)).

    Branch i has ``channels[i]`` channels and F / factor^i frequency bins.
    """

    def __init__(self, channels: Sequence[int], targets: Sequence[int], factor: int = 4) -> None:
        super().__init__()
        self.targets = tuple(targets)
        self.units = nn.ModuleDict()
        for j in self.targets:
            for i, width in enumerate(channels):
                if i > j:
                    self.units[f"{i}_to_{j}"] = UpExchange(width, channels[j], factor ** (i - j))
                elif i < j:
                    self.units[f"{i}_to_{j}"] = down_exchange(width, channels[j], j - i, factor)

    def forward(self, branches: list[torch.Tensor]) -> list[torch.Tensor]:
        fused = []
        for j in self.targets:
            total = branches[j]
            for i, x in enumerate(branches):
                if i != j:
                    total = total + self.units[f"{i}_to_{j}"](x)
            fused.append(F.relu(total))
        return fused


class MFF(nn.Module):
    """The MFF module (see the module docstring): (B, C0, T, F) -> (B, C0, T, F), F divisible by 16.

    ``channels`` are the widths of the F, F/4 and F/16 branches (64, 128, 256 in the paper), the first
    being the input's; ``tfcm_blocks`` is m (6 in the paper).
    """

    def __init__(self, channels: Sequence[int] = (64, 128, 256), tfcm_blocks: int = 6, factor: int = 4) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.start_quarter = FrequencyDownsample(c0, c1, factor)
        self.stage1 = nn.ModuleList(TFCM(c, tfcm_blocks) for c in (c0, c1))
        self.fuse1 = Fusion((c0, c1), targets=(0, 1), factor=factor)
        self.start_sixteenth = FrequencyDownsample(c1, c2, factor)
        self.stage2 = nn.ModuleList(TFCM(c, tfcm_blocks) for c in (c0, c1, c2))
        self.fuse2 = Fusion((c0, c1, c2), targets=(0, 1, 2), factor=factor)
        self.stage3 = nn.ModuleList(TFCM(c, tfcm_blocks) for c in (c0, c1, c2))
        self.fuse3 = Fusion((c0, c1, c2), targets=(0,), factor=factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [x, self.start_quarter(x)]
        branches = self.fuse1([tfcm(b) for tfcm, b in zip(self.stage1, branches, strict=True)])
        branches.append(self.start_sixteenth(branches[1]))
        branches = self.fuse2([tfcm(b) for tfcm, b in zip(self.stage2, branches, strict=True)])
        (full,) = self.fuse3([tfcm(b) for tfcm, b in zip(self.stage3, branches, strict=True)])
        return full + 0.5 * x  # the fusion's ReLU is the paper's ReLU on the full-resolution branch

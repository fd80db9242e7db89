"""A ResNet with multi-scale channel attention that pools frequency only (Stereo-RCnet's MCSAnet, section 2.2).

Residual block (He et al. 2016's basic block, with the attention placed as SE-ResNet places its
squeeze-and-excitation, on the residual branch before the sum):

    y = ReLU(shortcut(x) + MS-CAM(BN(conv3x3(ReLU(BN(conv3x3(x)))))))

MS-CAM is Dai et al.'s multi-scale channel attention (blocks/attention_fusion.py), the paper's MCSA;
``shortcut`` is the identity, or a 1 x 1 convolution + BN where the width changes. The convolutions have
no bias (BN follows each).

Network: a 3 x 3 conv + BN + ReLU stem to the first width, then one stage per width, each of
``blocks_per_stage`` residual blocks followed by a 1 x 2 average pooling over frequency. Time is never
pooled and every convolution pads to keep the length, so the output has the input's frames, as
Stereo-RCnet's backbone keeps "fine-grained temporal resolution" (following Niu et al. 2023); four
stages take 64 mel bins to 4.

The MS-CAM's global context averages each channel over the whole map, time included, so an output frame
is not a function of its neighbourhood alone: a long clip's windows (the runtime's, of the training
length) see the same global context as training did.
"""

from collections.abc import Sequence

import torch
from torch import nn

from seld_edge.models.blocks.attention_fusion import MSCAM


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]


class MCSABasicBlock(nn.Module):
    """Basic residual block with MS-CAM on its residual branch; (B, C_in, T, F) -> (B, C_out, T, F)."""

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            *_conv_bn(in_channels, out_channels, 3), nn.ReLU(inplace=True), *_conv_bn(out_channels, out_channels, 3)
        )
        self.attention = MSCAM(out_channels, reduction)
        self.shortcut = (
            nn.Identity() if in_channels == out_channels else nn.Sequential(*_conv_bn(in_channels, out_channels, 1))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shortcut(x) + self.attention(self.residual(x)))


class MCSANet(nn.Module):
    """Stem + stages of MCSA residual blocks, each stage ending in a frequency-only 1 x 2 average pooling.

    (B, in_channels, T, F) -> (B, widths[-1], T, F / 2^len(widths)).
    """

    def __init__(self, in_channels: int, widths: Sequence[int], blocks_per_stage: int, reduction: int = 4) -> None:
        super().__init__()
        if not widths or blocks_per_stage < 1:
            raise ValueError(f"MCSANet needs at least one stage of one block, got widths {widths}, {blocks_per_stage}")
        self.stem = nn.Sequential(*_conv_bn(in_channels, widths[0], 3), nn.ReLU(inplace=True))
        stages = []
        for c_in, c_out in zip((widths[0], *widths[:-1]), widths, strict=True):
            blocks = [MCSABasicBlock(c_in if i == 0 else c_out, c_out, reduction) for i in range(blocks_per_stage)]
            stages.append(nn.Sequential(*blocks, nn.AvgPool2d((1, 2))))
        self.stages = nn.Sequential(*stages)
        self.frequency_factor = 2 ** len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

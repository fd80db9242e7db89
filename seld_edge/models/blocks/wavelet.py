"""Wavelet downsampling: a fixed db4 2D DWT as a depthwise convolution, and FFMamba's WTED module."""

import torch
import torch.nn.functional as F
from torch import nn

# PyWavelets' db4 decomposition filters (pywt.Wavelet("db4").dec_lo / dec_hi; a test checks them).
DB4_DEC_LO = (
    -0.010597401785069032, 0.0328830116668852, 0.030841381835560764, -0.18703481171909309,
    -0.027983769416859854, 0.6308807679298589, 0.7148465705529157, 0.2303778133088965,
)  # fmt: skip
DB4_DEC_HI = tuple((-1) ** (k + 1) * c for k, c in enumerate(reversed(DB4_DEC_LO)))
SUBBANDS = ("LL", "LH", "HL", "HH")  # pywt.dwt2's cA, cH, cV, cD


class DWT2d(nn.Module):
    """One level of pywt.dwt2(x, "db4", mode="zero") on the last two axes of each channel.

    pywt computes out[o] = sum_j f[j] x[2o + 1 - j] for o < (n + 7) // 2, x zero outside; that is a
    stride-2 cross-correlation with the reversed filter after padding 6 before and 7 after. The four
    separable 8x8 kernels (filter along T outer filter along F) run as one depthwise conv, so the
    output (batch, 4 * C, T', F') is ordered [channel][subband] with subbands as in SUBBANDS.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        lo = torch.tensor(DB4_DEC_LO[::-1], dtype=torch.float32)
        hi = torch.tensor(DB4_DEC_HI[::-1], dtype=torch.float32)
        kernels = torch.stack([torch.outer(a, b) for a, b in ((lo, lo), (hi, lo), (lo, hi), (hi, hi))])
        self.channels = channels
        # Fixed, derived from the constants above: not a parameter and not saved in checkpoints.
        self.register_buffer("weight", kernels.repeat(channels, 1, 1)[:, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (6, 7, 6, 7)), self.weight, stride=2, groups=self.channels)


def conv_downsample(in_channels: int, out_channels: int) -> nn.Sequential:
    """2x2 stride-2 convolution and batch norm: VMamba's downsampling and WTED's conv branch."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 2, stride=2), nn.BatchNorm2d(out_channels))


class WTED(nn.Module):
    """Wavelet transform-enhanced downsampling: halves T and F, in_channels -> out_channels.

    Conv branch: conv_downsample. Wavelet branch: db4 DWT, the four subbands resized bilinearly to the
    conv branch's size, 1x1 conv, BN, GELU. Fused per channel by weights that sum to 1 (a softmax over
    two learnable logits per channel, starting at 1/2 each).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv_downsample(in_channels, out_channels)
        self.dwt = DWT2d(in_channels)
        self.wavelet = nn.Sequential(
            nn.Conv2d(len(SUBBANDS) * in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.GELU()
        )
        self.fusion_logits = nn.Parameter(torch.zeros(2, out_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv(x)
        bands = F.interpolate(self.dwt(x), size=conv.shape[-2:], mode="bilinear", align_corners=False)
        weights = self.fusion_logits.softmax(0)
        return weights[0] * conv + weights[1] * self.wavelet(bands)

"""Attentional feature fusion (Dai, Gieseke, Oehmcke, Wu and Barnard, WACV 2021): MS-CAM and AFF.

MS-CAM (their section 3.2) is channel attention at two scales: a local context L(X) per time-frequency
point and a global context G(X) from the global average pool, each a bottleneck of two 1 x 1
convolutions (C -> C/r, BN, ReLU, C/r -> C, BN); M(X) = sigmoid(L(X) + G(X)) and the recalibrated
map is X * M(X). :meth:`MSCAM.weights` returns M(X) alone, so that fusions other than AFF's reuse it
(Stereo-RCnet fuses its two channels as w L + (2 - w) R with w from MS-CAM).

AFF (their eq. 3) fuses two maps by a soft selection from the MS-CAM of their sum:
Z = M(X + Y) * X + (1 - M(X + Y)) * Y. The authors' PyTorch code returns twice that (2 X w + 2 Y (1 - w));
the equation is used here, so equal inputs come back unchanged. The 1 x 1 convolutions have no bias
(each is followed by BN, which has its own).
"""

import torch
from torch import nn


def _bottleneck(channels: int, reduction: int) -> nn.Sequential:
    hidden = max(channels // reduction, 1)
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(),
        nn.Conv2d(hidden, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
    )


class MSCAM(nn.Module):
    """Multi-scale channel attention module: ``forward`` gives X * M(X), ``weights`` gives M(X) in (0, 1)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.local_context = _bottleneck(channels, reduction)
        self.global_context = _bottleneck(channels, reduction)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """M(X), shaped like x: the local context per point plus the global context broadcast over it."""
        return torch.sigmoid(self.local_context(x) + self.global_context(x.mean((2, 3), keepdim=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class AFF(nn.Module):
    """Attentional feature fusion of two maps of equal shape (Dai et al. eq. 3)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.attention = MSCAM(channels, reduction)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = self.attention.weights(x + y)
        return w * x + (1.0 - w) * y

"""Stereo attentional fusion (Stereo-RCnet, section 2.2, eq. 1): F = w * L + (2 - w) * R.

L and R are the maps a shared backbone computed from the left and the right channel, and w = M(L + R) are
the weights of an MS-CAM (blocks/attention_fusion.py, Dai et al. 2021), one per channel, time and
frequency point, in (0, 1). Stereo-RCnet calls this the AFF module with an internal MCSA (its Fig. 1c);
what the MS-CAM sees is not written there: it sees L + R, as the AFF of Dai et al. (their eq. 3) does.

The weights are eq. 1 as printed: L gets w in (0, 1) and R gets 2 - w in (1, 2), so the fusion is not
symmetric in L and R (AFF's w L + (1 - w) R is, and so is the 2 w L + 2 (1 - w) R of its public code).
Whatever w is, equal inputs give F = 2 L: the fusion of a centred source's two equal maps is their sum.
"""

import torch
from torch import nn

from seld_edge.models.blocks.attention_fusion import MSCAM


class StereoFusion(nn.Module):
    """F = w L + (2 - w) R with w = MS-CAM(L + R); L, R and F are (B, C, T, F) maps of equal shape."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.attention = MSCAM(channels, reduction)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        w = self.attention.weights(left + right)
        return w * left + (2.0 - w) * right

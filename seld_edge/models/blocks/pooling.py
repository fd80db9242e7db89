"""Pooling: over the time axis of a sequence (from the feature frame rate down to the label rate), and over
a (time, frequency) map where a tiny scale coarsens its input."""

import torch
import torch.nn.functional as F
from torch import nn


class TimePooling(nn.Module):
    """(B, T, d) -> (B, T / factor, d): the mean of each run of ``factor`` frames (Stereo-RCnet's T-Pooling,
    eq. 3: 5 frames of 20 ms to one 100 ms label frame).

    An average, not a maximum: a label frame's direction and distance are the mean over its frames. T
    must be a multiple of the factor (the training chunks and the runtime's windows are whole label
    frames); a remainder would be dropped, as AveragePool does.
    """

    def __init__(self, factor: int) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"time pooling factor must be >= 1, got {factor}")
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool1d(x.transpose(1, 2), self.factor, self.factor).transpose(1, 2)


def average_pooling(kernel: tuple[int, int]) -> nn.Module:
    """Average pooling of a (B, C, T, F) map by (time, frequency) ``kernel``, stride = kernel; nothing for
    (1, 1), so that a published configuration that does not pool exports no no-op AveragePool node."""
    return nn.AvgPool2d(kernel) if tuple(kernel) != (1, 1) else nn.Identity()

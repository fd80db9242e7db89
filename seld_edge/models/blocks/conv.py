"""Convolution blocks."""

from torch import nn


class ConvBNReLU(nn.Sequential):
    """3x3 convolution, batch norm, ReLU: the DCASE baseline's ConvBlock."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

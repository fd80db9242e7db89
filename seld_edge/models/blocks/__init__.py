"""Building blocks shared by the model families (one definition each)."""

from seld_edge.models.blocks.conv import ConvBNReLU

__all__ = ["ConvBNReLU"]

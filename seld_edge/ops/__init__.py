"""Torch operators the models need that PyTorch lacks: the selective scan of Mamba-style models."""

from seld_edge.ops.selective_scan import selective_scan

__all__ = ["selective_scan"]

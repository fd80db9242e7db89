"""How big and how costly a zoo model is: parameters, and multiply-accumulates (MACs) for a clip.

MACs come from torch.utils.flop_counter.FlopCounterMode, which runs the model once and counts the
FLOPs of matrix products (mm, bmm, addmm, baddbmm, matmul via these), convolutions (and transposed
ones) and scaled-dot-product attention, each as 2 FLOPs per multiply-accumulate; MACs = FLOPs / 2.
Everything else is not counted: bias additions, normalisation, activations, pooling, softmax,
elementwise arithmetic, and the recurrences inside GRU/LSTM kernels (counted only where they run as
matrix products). This is the usual "MACs" of papers (thop, ptflops), which also count only the
multiply-accumulates of convolutions and linear layers.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from seld_edge.models._registry import create, model_card


@dataclass(frozen=True)
class Complexity:
    """Parameters and MACs of one model for one clip length."""

    name: str
    parameters: int
    macs: int
    seconds: float

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on ``inputs`` (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def clip_input(name: str, seconds: float, batch: int = 1) -> torch.Tensor:
    """Random features (batch, C, T, F) of a registered model for a clip of ``seconds`` (whole label frames)."""
    card = model_card(name)
    config = card.feature_config()
    frames = round(seconds * card.label_rate_hz) * config.frames_per_label(card.label_rate_hz)
    return torch.randn(batch, config.out_channels, frames, config.n_bins)


def model_complexity(name: str, seconds: float = 5.0, **overrides: object) -> Complexity:
    """Parameters and MACs of the registered model ``name`` on one clip of ``seconds``."""
    model = create(name, **overrides)
    return Complexity(name, count_parameters(model), count_macs(model, clip_input(name, seconds)), seconds)


__all__ = ["Complexity", "clip_input", "count_macs", "count_parameters", "model_complexity"]

"""How big and how costly a zoo model is: parameters, and multiply-accumulates (MACs) for a clip.

MACs come from torch.utils.flop_counter.FlopCounterMode, run on the meta device (shapes only, nothing
computed, so even the 85 M-parameter models take a second). It counts the FLOPs of matrix products
(mm, bmm, addmm, baddbmm, matmul via these), convolutions (and transposed ones) and scaled-dot-product
attention, each as 2 FLOPs per multiply-accumulate; MACs = FLOPs / 2. Everything else is not counted:
bias additions, normalisation, activations, pooling, softmax, elementwise arithmetic (a selective
scan's recurrence among them), and the recurrences inside GRU/LSTM kernels (counted only where they run
as matrix products). This is the usual "MACs" of papers (thop, ptflops).

A clip costs what the runtime spends on it: the windows it cuts the clip into (seld_edge.inference),
each one forward pass of every network of the model. A 5 s clip is one window for a model trained on
5 s chunks, and two 3 s windows for M2M-AST.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from seld_edge.inference import hop_labels
from seld_edge.models._registry import CompositeCard, model_card
from seld_edge.models.system import new_system, system_metadata
from seld_edge.postprocess import PostProcessing, window_starts

DEFAULT_WINDOW_SECONDS = 5.0  # TrainConfig.chunk_seconds, for a card that does not set its own


@dataclass(frozen=True)
class Complexity:
    """Parameters, MACs and activation sizes of one model for one clip length (the runtime's windows).

    activations: elements written by the model's leaf modules (every layer's output) over all windows,
    the traffic a device must at least write once; a lower bound for memory-bound time.
    """

    name: str
    parameters: int
    macs: int
    seconds: float
    windows: int
    activations: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_activations(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Elements of every leaf module's output in one forward pass (eval mode, no gradients)."""
    total = 0

    def count(_: nn.Module, __: object, output: object) -> None:
        nonlocal total
        tensors = output if isinstance(output, tuple | list) else (output,)
        total += sum(t.numel() for t in tensors if isinstance(t, torch.Tensor))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model.eval()(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total


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


def window_seconds(name: str) -> float:
    """The inference window of a registered model: its card's training chunk (a composite's first part's)."""
    card = model_card(name)
    if isinstance(card, CompositeCard):
        return window_seconds(next(iter(card.parts.values())))
    return float(card.training.get("chunk_seconds", DEFAULT_WINDOW_SECONDS))


def model_complexity(name: str, seconds: float = 5.0) -> Complexity:
    """Parameters (counted on a real build) and MACs (on the meta device) of the registered model ``name``
    for one clip of ``seconds``, with the runtime's windows."""
    parameters = count_parameters(new_system(name))
    with torch.device("meta"):
        system = new_system(name)
        meta = system_metadata(system, ["class"] * system.num_classes, window_seconds(name), PostProcessing())
        inputs = [
            torch.empty(1, i.feature_config.out_channels, meta.window_frames(i), i.feature_config.n_bins)
            for i in meta.inputs
        ]
        macs_per_window = count_macs(system, *inputs)
        activations = count_activations(system, *inputs)
    labels = max(1, round(seconds * meta.label_rate_hz))
    windows = len(window_starts(max(labels, meta.window_labels), meta.window_labels, hop_labels(meta)))
    return Complexity(name, parameters, windows * macs_per_window, seconds, windows, windows * activations)


__all__ = ["Complexity", "count_activations", "count_macs", "count_parameters", "model_complexity", "window_seconds"]

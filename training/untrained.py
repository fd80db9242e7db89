"""Checkpoints of untrained models, as training would write them: for benchmarks and tests that need a
model to export, run and compare without training it first.

A composite model's checkpoint is composed from untrained checkpoints of its parts, exactly as
``seld-edge compose`` composes trained ones.
"""

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from seld_edge.models import CompositeCard, SeldSystem, model_card, network_card
from seld_edge.postprocess import PostProcessing
from training.checkpoint import save_checkpoint
from training.compose import compose_checkpoint
from training.config import TrainConfig

DEFAULT_CHUNK_SECONDS = TrainConfig.chunk_seconds


def untrained_checkpoint(
    name: str,
    folder: Path,
    chunk_seconds: float | None = None,
    postprocess: PostProcessing | None = None,
    random_normaliser: bool = True,
    seed: int = 0,
) -> Path:
    """Write an untrained checkpoint of the registered model ``name`` into ``folder`` (a run folder with
    best.json and best.safetensors) and return the folder.

    Weights are the model's initialisation under ``seed``; the normaliser is random (so a test sees it
    act) or the identity. The window is ``chunk_seconds``, by default the card's training chunk.
    """
    card = model_card(name)
    if isinstance(card, CompositeCard):
        parts = {
            part: untrained_checkpoint(network, folder / "parts" / part, chunk_seconds, postprocess,
                                       random_normaliser, seed + index)
            for index, (part, network) in enumerate(card.parts.items())
        }  # fmt: skip
        return compose_checkpoint(name, parts, folder).parent
    card = network_card(name)
    config = card.feature_config()
    shape = (config.out_channels, 1, config.n_bins)
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal(shape) if random_normaliser else np.zeros(shape)
    std = rng.uniform(0.5, 1.5, shape) if random_normaliser else np.ones(shape)
    torch.manual_seed(seed)
    system = SeldSystem(name, {}, mean.astype(np.float32), std.astype(np.float32)).eval()
    chunk = chunk_seconds or card.training.get("chunk_seconds", DEFAULT_CHUNK_SECONDS)
    info = {
        "class_names": [f"class_{i}" for i in range(system.model_args["num_classes"])],
        "postprocess": (postprocess or PostProcessing()).to_dict(),
        "train_config": asdict(TrainConfig(name, "untrained", str(folder), chunk_seconds=chunk)),
    }
    save_checkpoint(folder / "best", system, info)
    return folder

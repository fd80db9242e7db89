"""PyTorch inference over whole clips: the runtime's pipeline with a PyTorch model as its network.

Everything around the network (finding the clips, features, windows, overlap averaging, test-time
augmentation, the 100 ms grid, post-processing, CSV form) is the runtime's own numpy code
(runtime.pipeline), so `seld-edge predict` and `seld-edge run` differ only in how the network is
evaluated.
"""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from runtime.pipeline import run_files
from seld_edge.model_metadata import ModelMetadata
from seld_edge.models import Systems
from training.checkpoint import checkpoint_metadata, load_checkpoint, resolve_checkpoint


class TorchModel:
    """A system behind the runtime's Model interface: metadata, and feature batches by input name ->
    named numpy outputs."""

    def __init__(self, system: Systems, metadata: ModelMetadata) -> None:
        self.metadata = metadata
        self.system = system
        self._device = next(system.parameters()).device

    @torch.no_grad()
    def __call__(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batches = [torch.from_numpy(np.asarray(features[i.name], dtype=np.float32)).to(self._device)
                   for i in self.metadata.inputs]  # fmt: skip
        return {k: v.float().cpu().numpy() for k, v in self.system(*batches).items()}


def predict_files(
    checkpoint: str | Path, source: Path, out_dir: Path, tta: bool = False, device: str = "cpu"
) -> list[Path]:
    """`seld-edge predict`: the runtime's offline pipeline with the PyTorch model as its network.

    So predict and `seld-edge run` share file discovery, input checks (all before any CSV is
    written), windowing, post-processing and CSV forms, and differ only in the network.
    """
    system, meta = load_checkpoint(checkpoint, device=device)
    model = TorchModel(system, checkpoint_metadata(resolve_checkpoint(checkpoint), system, meta))
    return run_files(model, source, out_dir, tta=tta, label="predict")

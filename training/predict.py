"""PyTorch inference over whole clips: sliding windows, overlap averaging, optional rotation TTA.

Everything after the network (averaging, median filter, thresholds, decoding) is seld_edge's numpy
post-processing, the code the torch-free runtime runs, so `seld-edge predict` and `seld-edge run`
differ only in how the network is evaluated.
"""

from pathlib import Path

import numpy as np
import torch

from runtime.pipeline import run_files
from seld_edge.errors import SeldEdgeError
from seld_edge.formats import Event
from seld_edge.inference import Network, windowed_outputs
from seld_edge.model_metadata import ModelMetadata
from seld_edge.models import SeldSystem
from seld_edge.postprocess import PostProcessing
from training.checkpoint import checkpoint_metadata, load_checkpoint, resolve_checkpoint


def torch_network(system: SeldSystem) -> Network:
    """The system as a seld_edge.inference Network: numpy batch in, named numpy outputs out."""
    device = next(system.parameters()).device

    @torch.no_grad()
    def network(batch: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v.float().cpu().numpy() for k, v in system(torch.from_numpy(batch).to(device)).items()}

    return network


def clip_outputs(
    system: SeldSystem,
    features: np.ndarray,
    window_seconds: float = 5.0,
    hop_seconds: float = 2.5,
    tta: bool = False,
) -> dict[str, np.ndarray]:
    """Label-rate outputs of a whole clip, windows given in seconds (converted to label frames)."""
    config = system.card.feature_config()
    per_label = config.frames_per_label(system.card.label_rate_hz)
    window = round(window_seconds * system.card.label_rate_hz) * per_label
    hop = max(per_label, round(hop_seconds * system.card.label_rate_hz) * per_label)
    fmt, classes = system.card.output_format, system.model_args["num_classes"]
    return windowed_outputs(torch_network(system), features, per_label, window, hop, fmt, classes, tta=tta)


def predict_events(
    system: SeldSystem,
    features: np.ndarray,
    postprocess: PostProcessing,
    window_seconds: float = 5.0,
    hop_seconds: float = 2.5,
    tta: bool = False,
) -> list[Event]:
    outputs = clip_outputs(system, features, window_seconds, hop_seconds, tta)
    return postprocess.to_events(outputs, system.card.output_format, system.model_args["num_classes"])


class TorchModel:
    """A SeldSystem behind the runtime's Model interface: metadata, and numpy batch -> named outputs."""

    def __init__(self, system: SeldSystem, metadata: ModelMetadata) -> None:
        self.metadata = metadata
        self._network = torch_network(system)

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self._network(batch)


def predict_files(
    checkpoint: str | Path, source: Path, out_dir: Path, tta: bool = False, device: str = "cpu"
) -> list[Path]:
    """`seld-edge predict`: the runtime's offline pipeline with the PyTorch model as its network.

    So predict and `seld-edge run` share file discovery, input checks (all before any CSV is
    written), windowing, post-processing and CSV forms, and differ only in the network.
    """
    stem = resolve_checkpoint(checkpoint)
    system, meta = load_checkpoint(stem, device=device)
    if tta and system.card.feature_config().iv_norm is None:
        raise SeldEdgeError("--tta rotates FOA features; this model takes stereo input")
    return run_files(TorchModel(system, checkpoint_metadata(stem, system, meta)), source, out_dir, tta=tta)

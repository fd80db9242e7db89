"""PyTorch inference over whole clips: sliding windows, overlap averaging, optional rotation TTA.

Everything after the network (averaging, median filter, thresholds, decoding) is seld_edge's numpy
post-processing, the code the torch-free runtime runs, so `seld-edge predict` and `seld-edge run`
differ only in how the network is evaluated.
"""

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from seld_edge.audio import find_audio_files
from seld_edge.features import FeatureConfig, features_from_file
from seld_edge.formats import Event, write_events
from seld_edge.inference import windowed_outputs
from seld_edge.models import SeldSystem
from seld_edge.postprocess import PostProcessing


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
    device = next(system.parameters()).device

    @torch.no_grad()
    def network(batch: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v.float().cpu().numpy() for k, v in system(torch.from_numpy(batch).to(device)).items()}

    fmt, classes = system.card.output_format, system.model_args["num_classes"]
    return windowed_outputs(network, features, per_label, window, hop, fmt, classes, tta=tta)


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


def predict_files(
    system: SeldSystem,
    meta: dict,
    source: Path,
    out_dir: Path,
    tta: bool = False,
    form: str | None = None,
) -> list[Path]:
    """Write one DCASE CSV per audio file of source (a file or a folder searched recursively).

    All audio is checked before anything is written, so bad input leaves no partial output.
    """
    config = FeatureConfig.from_json(meta["feature_config"])
    postprocess = PostProcessing.from_dict(meta.get("postprocess", {}))
    form = form or ("dcase2025" if config.in_channels == 2 else "cartesian")
    files = find_audio_files(source)
    features = [features_from_file(f, config) for f in tqdm(files, desc="features", unit="file")]
    written = []
    for path, feats in tqdm(list(zip(files, features, strict=True)), desc="predict", unit="file"):
        events = predict_events(system, feats, postprocess, tta=tta)
        target = out_dir / f"{path.stem}.csv"
        write_events(target, events, form=form)
        written.append(target)
    return written

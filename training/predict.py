"""PyTorch inference over whole clips: sliding windows, overlap averaging, optional rotation TTA.

Everything after the network (averaging, median filter, thresholds, decoding) is seld_edge's numpy
post-processing, the code the torch-free runtime runs, so `seld-edge predict` and `seld-edge run`
differ only in how the network is evaluated.
"""

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from seld_edge.errors import SeldEdgeError
from seld_edge.features import FeatureConfig, features_from_file
from seld_edge.foa_transforms import FOA_TRANSFORMS
from seld_edge.formats import Event, write_events
from seld_edge.models import SeldSystem
from seld_edge.postprocess import PostProcessing, label_starts, overlap_average, rotate_outputs, window_starts
from training.data import frames_per_label


@torch.no_grad()
def predict_outputs(
    system: SeldSystem,
    features: np.ndarray,
    per_label: int,
    window_frames: int,
    hop_frames: int,
    batch_size: int = 16,
    tta: bool = False,
) -> dict[str, np.ndarray]:
    """Network outputs at the label rate for a whole clip's features (C, T, F), windows averaged.

    With tta, the features are passed through each of the 16 FOA transforms and the outputs rotated
    back before averaging (M2M-AST's test-time augmentation).
    """
    device = next(system.parameters()).device
    n_labels = -(-features.shape[1] // per_label)
    padded_length = max(n_labels * per_label, window_frames)
    features = np.pad(features, ((0, 0), (0, padded_length - features.shape[1]), (0, 0)))
    starts = window_starts(n_labels * per_label, window_frames, hop_frames)
    windows = [features[:, start : start + window_frames] for start in starts]
    transforms = FOA_TRANSFORMS if tta else (None,)
    fmt, classes = system.card.output_format, system.model_args["num_classes"]
    averaged: list[dict[str, np.ndarray]] = []
    for transform in transforms:
        batch = np.stack([w if transform is None else transform.features(w) for w in windows])
        per_window: dict[str, list[np.ndarray]] = {name: [] for name in system.output_names}
        for i in range(0, len(batch), batch_size):
            out = system(torch.from_numpy(batch[i : i + batch_size]).to(device))
            for name, value in out.items():
                per_window[name].extend(value.float().cpu().numpy())
        clip = {
            name: overlap_average(values, label_starts(starts, per_label), n_labels)
            for name, values in per_window.items()
        }
        averaged.append(clip if transform is None else rotate_outputs(clip, fmt, classes, transform.inverse))
    return {name: np.mean([a[name] for a in averaged], axis=0) for name in system.output_names}


def predict_events(
    system: SeldSystem,
    features: np.ndarray,
    postprocess: PostProcessing,
    window_seconds: float = 5.0,
    hop_seconds: float = 2.5,
    tta: bool = False,
) -> list[Event]:
    config = system.card.feature_config()
    per_label = frames_per_label(config, system.card.label_rate_hz)
    window = round(window_seconds * system.card.label_rate_hz) * per_label
    hop = max(per_label, round(hop_seconds * system.card.label_rate_hz) * per_label)
    outputs = predict_outputs(system, features, per_label, window, hop, tta=tta)
    return postprocess.to_events(outputs, system.card.output_format, system.model_args["num_classes"])


def audio_files(path: Path, suffixes: tuple[str, ...] = (".wav", ".flac")) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise SeldEdgeError(f"{path}: no such file or directory")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes)
    if not files:
        raise SeldEdgeError(f"{path}: no audio files ({', '.join(suffixes)})")
    return files


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
    files = audio_files(source)
    features = [features_from_file(f, config) for f in tqdm(files, desc="features", unit="file")]
    written = []
    for path, feats in tqdm(list(zip(files, features, strict=True)), desc="predict", unit="file"):
        events = predict_events(system, feats, postprocess, tta=tta)
        target = out_dir / f"{path.stem}.csv"
        write_events(target, events, form=form)
        written.append(target)
    return written

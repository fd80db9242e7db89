"""Whole-clip inference around any network: windows, overlap averaging, rotation TTA (numpy).

The network is a callable from a feature batch (B, C, T, F) to named outputs, so PyTorch
(`seld-edge predict`), ONNX Runtime and TensorRT (`seld-edge run`) share this code and differ only
in that callable.
"""

from collections.abc import Callable, Mapping

import numpy as np

from seld_edge.foa_transforms import FOA_TRANSFORMS
from seld_edge.postprocess import label_starts, overlap_average, rotate_outputs, window_starts

Network = Callable[[np.ndarray], Mapping[str, np.ndarray]]


def windowed_outputs(
    network: Network,
    features: np.ndarray,
    per_label: int,
    window_frames: int,
    hop_frames: int,
    output_format: str,
    num_classes: int,
    batch_size: int = 16,
    tta: bool = False,
) -> dict[str, np.ndarray]:
    """Network outputs at the label rate for a whole clip's features (C, T, F), windows averaged.

    The clip is zero-padded to whole label frames (and at least one window), cut into windows every
    hop_frames, and the windows' outputs averaged where they overlap. With tta, each window also goes
    through the 16 FOA transforms and the outputs are rotated back before averaging (M2M-AST).
    """
    n_labels = -(-features.shape[1] // per_label)
    padded_length = max(n_labels * per_label, window_frames)
    features = np.pad(features, ((0, 0), (0, padded_length - features.shape[1]), (0, 0)))
    starts = window_starts(n_labels * per_label, window_frames, hop_frames)
    windows = [features[:, start : start + window_frames] for start in starts]
    averaged: list[dict[str, np.ndarray]] = []
    for transform in FOA_TRANSFORMS if tta else (None,):
        batch = np.stack([w if transform is None else transform.features(w) for w in windows])
        per_window: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(batch), batch_size):
            for name, value in network(np.ascontiguousarray(batch[i : i + batch_size])).items():
                per_window.setdefault(name, []).extend(np.asarray(value, dtype=np.float32))
        clip = {
            name: overlap_average(values, label_starts(starts, per_label), n_labels)
            for name, values in per_window.items()
        }
        averaged.append(
            clip if transform is None else rotate_outputs(clip, output_format, num_classes, transform.inverse)
        )
    return {name: np.mean([a[name] for a in averaged], axis=0) for name in averaged[0]}

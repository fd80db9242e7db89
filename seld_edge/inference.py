"""Whole-clip inference around any network: windows, overlap averaging, test-time augmentation (numpy).

The network is a callable from feature batches by input name, each (B, C, T, F), to named outputs, so
PyTorch (`seld-edge predict`), ONNX Runtime and TensorRT (`seld-edge run`) share this code and differ
only in that callable. Windows are cut in the model's label frames, so the inputs of a composite model
(each with its own feature frames per label frame) stay aligned.
"""

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from seld_edge.errors import SeldEdgeError
from seld_edge.foa_transforms import FoaTransform
from seld_edge.model_metadata import ModelInput, ModelMetadata
from seld_edge.postprocess import overlap_average, window_starts

Network = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
BATCH_SIZE = 16
HOP_SECONDS = 2.5
"""Hop between offline windows (the window is the model's own): `run`, `predict` and validation."""


def hop_labels(meta: ModelMetadata, hop_seconds: float = HOP_SECONDS) -> int:
    """Hop between offline windows in label frames: hop_seconds, at least one frame and at most the
    window (a longer hop would leave frames between windows without an output)."""
    return min(max(1, round(hop_seconds * meta.label_rate_hz)), meta.window_labels)


def tta_transforms(meta: ModelMetadata) -> tuple[FoaTransform, ...]:
    """The transforms test-time augmentation averages over: those of the input that has most of them
    (FOA: all 16, stereo: the identity and the mirror).

    An input without that transform (a MIC-array input) is fed unchanged, which is right because only an
    output that does not depend on direction may come from it: a composite's SED network reads the MIC
    array, its DOA network FOA. A model with no input that can be transformed has no TTA.
    """
    transforms = max((i.feature_config.spatial_transforms for i in meta.inputs), key=len)
    if len(transforms) == 1:
        raise SeldEdgeError(
            f"{meta.model}: its inputs have no spatial transform, so there is no test-time augmentation"
        )
    return transforms


def n_label_frames(features: Mapping[str, np.ndarray], meta: ModelMetadata) -> int:
    """Output frames of a clip: its feature frames in whole label frames (the longest input decides)."""
    return max(-(-features[i.name].shape[1] // meta.frames_per_label(i)) for i in meta.inputs)


def windowed_outputs(
    network: Network,
    features: Mapping[str, np.ndarray],
    meta: ModelMetadata,
    hop: int,
    tta: bool = False,
    batch_size: int = BATCH_SIZE,
) -> dict[str, np.ndarray]:
    """Network outputs at the model's label rate for a whole clip's features (C, T, F) by input name.

    Every input is zero-padded to whole label frames (and at least one window), cut into windows of
    ``meta.window_labels`` every hop label frames, and the windows' outputs are averaged where
    they overlap. With tta, each window also goes through every transform of :func:`tta_transforms`
    and the outputs are transformed back by the output format before averaging (M2M-AST's 16-way FOA
    rotation). Windows are run batch_size at a time, so memory does not grow with the clip beyond the
    features and outputs themselves.
    """
    missing = [i.name for i in meta.inputs if i.name not in features]
    if missing:
        raise SeldEdgeError(f"{meta.model} needs features for its inputs {missing}")
    n_labels = n_label_frames(features, meta)
    window = meta.window_labels
    padded = {}
    for model_input in meta.inputs:
        array, per_label = features[model_input.name], meta.frames_per_label(model_input)
        length = max(n_labels, window) * per_label
        padded[model_input.name] = np.pad(array, ((0, 0), (0, length - array.shape[1]), (0, 0)))
    starts = window_starts(n_labels, window, hop)
    transforms: Sequence[FoaTransform | None] = tta_transforms(meta) if tta else (None,)
    fmt = meta.format
    averaged: list[dict[str, np.ndarray]] = []
    for transform in transforms:
        per_window: dict[str, list[np.ndarray]] = {}
        for first in range(0, len(starts), batch_size):
            batch = {
                i.name: np.stack(
                    [_window(padded[i.name], i, meta, start, transform) for start in starts[first : first + batch_size]]
                )
                for i in meta.inputs
            }
            for name, value in network(batch).items():
                per_window.setdefault(name, []).extend(np.asarray(value, dtype=np.float32))
        clip = {name: overlap_average(values, starts, n_labels) for name, values in per_window.items()}
        averaged.append(clip if transform is None else fmt.transform(clip, meta.num_classes, transform.inverse))
    return {name: np.mean([a[name] for a in averaged], axis=0) for name in averaged[0]}


def _window(
    features: np.ndarray, model_input: ModelInput, meta: ModelMetadata, start: int, transform: FoaTransform | None
) -> np.ndarray:
    """One window of one input's features from label frame start, transformed when the input can be."""
    per_label = meta.frames_per_label(model_input)
    window = np.ascontiguousarray(features[:, start * per_label : (start + meta.window_labels) * per_label])
    config = model_input.feature_config
    if transform is None or len(config.spatial_transforms) == 1:
        return window
    return config.transform(window, transform)

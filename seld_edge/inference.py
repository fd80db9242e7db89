"""Whole-clip inference around any network: windows, overlap averaging, test-time augmentation (numpy).

The network is a callable from feature batches by input name, each (B, C, T, F), to named outputs, so
PyTorch (`seld-edge predict`), ONNX Runtime and TensorRT (`seld-edge run`) share this code and differ
only in that callable. Windows are cut in the model's label frames, so the inputs of a composite model
(each with its own feature frames per label frame) stay aligned. A clip's outputs come in blocks of
frames (:func:`output_blocks`), so a recording of any length runs in bounded memory when its features
are computed on demand (seld_edge.features.FileFeatures) rather than held (:class:`ArrayFeatures`,
:func:`windowed_outputs`).
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

import numpy as np

from seld_edge.errors import SeldEdgeError
from seld_edge.foa_transforms import FoaTransform
from seld_edge.model_metadata import ModelInput, ModelMetadata
from seld_edge.postprocess import OverlapAverage, window_starts

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


class FeatureSource(Protocol):
    """One input's features (C, T, F) of a clip, handed out by range of frames: in memory
    (:class:`ArrayFeatures`), or computed from a file on demand (seld_edge.features.FileFeatures)."""

    @property
    def n_frames(self) -> int: ...

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames start .. stop - 1 (C, stop - start, F); zeros past the end."""
        ...


class ArrayFeatures:
    """A clip's features held in memory as a :class:`FeatureSource`."""

    def __init__(self, features: np.ndarray) -> None:
        self.features = features

    @property
    def n_frames(self) -> int:
        return self.features.shape[1]

    def frames(self, start: int, stop: int) -> np.ndarray:
        part = self.features[:, start:stop]
        return np.pad(part, ((0, 0), (0, stop - start - part.shape[1]), (0, 0)))


class ModelOutputError(SeldEdgeError):
    """The network gave outputs its metadata cannot describe (shape) or no number at all (NaN, inf)."""


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
    """Network outputs at the model's label rate for a whole clip's features (C, T, F) by input name, held
    in memory: :func:`output_blocks`, joined."""
    missing = [i.name for i in meta.inputs if i.name not in features]
    if missing:
        raise SeldEdgeError(f"{meta.model} needs features for its inputs {missing}")
    sources = {i.name: ArrayFeatures(features[i.name]) for i in meta.inputs}
    blocks = list(output_blocks(network, sources, meta, hop, tta, batch_size))
    return {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}


def output_blocks(
    network: Network,
    sources: Mapping[str, FeatureSource],
    meta: ModelMetadata,
    hop: int,
    tta: bool = False,
    batch_size: int = BATCH_SIZE,
) -> Iterator[dict[str, np.ndarray]]:
    """Network outputs at the model's label rate for a clip, in consecutive blocks of frames from the first.

    Every input is zero-padded to whole label frames (and at least one window), cut into windows of
    ``meta.window_labels`` every hop label frames, and the windows' outputs are averaged where
    they overlap. With tta, each window also goes through every transform of :func:`tta_transforms`
    and the outputs are transformed back by the output format before averaging (M2M-AST's 16-way FOA
    rotation). Windows are run batch_size at a time; after each batch the frames no later window reaches
    are handed out, so memory holds a batch of windows whatever the clip's length, and the features are
    asked of the sources batch by batch.
    """
    per_label = {i.name: meta.frames_per_label(i) for i in meta.inputs}
    n_labels = max(-(-sources[i.name].n_frames // per_label[i.name]) for i in meta.inputs)
    window = meta.window_labels
    starts = window_starts(n_labels, window, hop)
    transforms: Sequence[FoaTransform | None] = tta_transforms(meta) if tta else (None,)
    averages = [{name: OverlapAverage(n_labels) for name in meta.output_names} for _ in transforms]
    fmt = meta.format
    for first in range(0, len(starts), batch_size):
        batch_starts = starts[first : first + batch_size]
        low = batch_starts[0]
        features = {
            i.name: sources[i.name].frames(low * per_label[i.name], (batch_starts[-1] + window) * per_label[i.name])
            for i in meta.inputs
        }
        for average, transform in zip(averages, transforms, strict=True):
            batch = {
                i.name: np.stack([_window(features[i.name], i, meta, start - low, transform) for start in batch_starts])
                for i in meta.inputs
            }
            outputs = checked_outputs(network(batch), meta, len(batch_starts))
            for name, value in outputs.items():
                for index, start in enumerate(batch_starts):
                    average[name].add(start, value[index])
        done = starts[first + batch_size] if first + batch_size < len(starts) else n_labels
        parts = []
        for average, transform in zip(averages, transforms, strict=True):
            part = {name: frames.pop(done) for name, frames in average.items()}
            parts.append(part if transform is None else fmt.transform(part, meta.num_classes, transform.inverse))
        yield {name: np.mean([part[name] for part in parts], axis=0) for name in parts[0]}


def checked_outputs(
    outputs: Mapping[str, np.ndarray], meta: ModelMetadata, windows: int, finite: bool = True
) -> dict[str, np.ndarray]:
    """The network's outputs as float32, each (windows, window_labels, ...) and (with finite) finite; else
    ModelOutputError."""
    checked = {}
    for name in meta.output_names:
        if name not in outputs:
            raise ModelOutputError(f"{meta.model} gave no output {name!r}")
        value = np.asarray(outputs[name], dtype=np.float32)
        if value.ndim < 2 or value.shape[:2] != (windows, meta.window_labels):
            raise ModelOutputError(
                f"{meta.model} gave output {name!r} of shape {value.shape} for {windows} window(s) of "
                f"{meta.window_labels} label frames; expected ({windows}, {meta.window_labels}, ...)"
            )
        if finite and not np.isfinite(value).all():
            raise ModelOutputError(f"{meta.model} gave NaN or infinite outputs ({name!r}); are its weights finite?")
        checked[name] = value
    return checked


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

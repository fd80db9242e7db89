"""Data for training: cached features, a train-split normaliser, 5 s training chunks, eval clips.

Features are computed once per clip with the numpy definition (seld_edge.features) and cached as
.npy under a folder named by the feature config's hash, so a changed config never reads stale
features. The normaliser (mean/std per channel and frequency, as the baseline's StandardScaler per
feature column) is fitted on the training split only: the baseline's fit on dev-test is a leak.
"""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from seld_edge.errors import SeldEdgeError
from seld_edge.features import FeatureConfig, features_from_file
from seld_edge.formats import Clip, Event, find_clips, read_events
from seld_edge.formats.labels import get_output_format
from seld_edge.io import atomic_save_npy


@dataclass
class ClipData:
    """One clip in memory: features (C, T, F) at the feature rate and its events at 100 ms."""

    clip: Clip
    features: np.ndarray
    events: list[Event]
    n_label_frames: int


def cache_folder(data_dir: Path, config: FeatureConfig, cache_dir: str | None) -> Path:
    digest = hashlib.sha256(config.to_json().encode()).hexdigest()[:12]
    return Path(cache_dir or data_dir / ".seld_cache") / f"{config.kind}-{digest}"


def load_clips(
    data_dir: str | Path,
    config: FeatureConfig,
    label_rate_hz: float,
    num_classes: int,
    audio_folder: str = "foa_dev",
    cache_dir: str | None = None,
    progress: bool = True,
) -> list[ClipData]:
    """Every labelled clip of the data set with cached features; errors name the offending file."""
    data_dir = Path(data_dir)
    clips = [c for c in find_clips(data_dir, audio_folder) if c.metadata is not None]
    if not clips:
        raise SeldEdgeError(f"{data_dir}: no audio file has metadata in metadata_dev/")
    folder = cache_folder(data_dir, config, cache_dir)
    per_label = config.frames_per_label(label_rate_hz)
    loaded = []
    for clip in tqdm(clips, desc="features", unit="clip", disable=not progress):
        path = folder / clip.folder / f"{clip.name}.npy"
        if path.is_file():
            features = np.load(path)
        else:
            features = features_from_file(clip.audio, config)
            atomic_save_npy(path, features)
        n_label_frames = -(-features.shape[1] // per_label)
        events = read_events(clip.metadata, reference=True, num_classes=num_classes)
        late = [e.frame for e in events if e.frame >= n_label_frames]
        if late:
            raise SeldEdgeError(
                f"{clip.metadata}: frame {max(late)} is past the end of {clip.audio.name} "
                f"({n_label_frames} label frames of 100 ms)"
            )
        loaded.append(ClipData(clip, features, events, n_label_frames))
    return loaded


@dataclass(frozen=True)
class Normalizer:
    """Per (channel, frequency) standardisation; mean and std have shape (C, 1, F)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, clips: Sequence[ClipData]) -> "Normalizer":
        if not clips:
            raise SeldEdgeError("no training clips to fit the feature normaliser on")
        stacked = np.concatenate([c.features for c in clips], axis=1).astype(np.float64)
        mean = stacked.mean(axis=1, keepdims=True)
        std = np.maximum(stacked.std(axis=1, keepdims=True), 1e-5)
        return cls(mean.astype(np.float32), std.astype(np.float32))


class ChunkDataset(Dataset):
    """Fixed-length training chunks every ``hop_frames``, from a random offset re-drawn each epoch.

    Each epoch covers every clip in chunks of ``chunk_frames`` feature frames, one every
    ``hop_frames`` (overlapping when the hop is shorter), starting at a random offset so chunk
    borders differ between epochs. Targets are encoded after augmentation, so rotated audio gets
    rotated labels.
    """

    def __init__(
        self,
        clips: Sequence[ClipData],
        chunk_frames: int,
        hop_frames: int,
        per_label: int,
        output_format: str,
        num_classes: int,
        encode_options: Mapping[str, Any],
        augment: Any = None,
        seed: int = 0,
    ) -> None:
        if chunk_frames % per_label or hop_frames % per_label or hop_frames <= 0:
            raise SeldEdgeError("training chunks and their hop must be whole, positive numbers of label frames")
        self.clips = clips
        self.chunk_frames = chunk_frames
        self.hop_frames = hop_frames
        self.per_label = per_label
        self.format = get_output_format(output_format)
        self.num_classes = num_classes
        self.encode_options = dict(encode_options)
        self.augment = augment
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        rng = np.random.default_rng((self.seed, epoch))
        self.index = []
        for i, clip in enumerate(self.clips):
            length = clip.n_label_frames * self.per_label
            offset = int(rng.integers(0, self.hop_frames)) if length > self.chunk_frames else 0
            offset -= offset % self.per_label
            starts = list(range(offset, max(length - self.chunk_frames, 0) + 1, self.hop_frames)) or [0]
            self.index += [(i, s) for s in starts]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        clip_index, start = self.index[item]
        clip = self.clips[clip_index]
        features = clip.features[:, start : start + self.chunk_frames]
        if features.shape[1] < self.chunk_frames:
            features = np.pad(features, ((0, 0), (0, self.chunk_frames - features.shape[1]), (0, 0)))
        first = start // self.per_label
        n_labels = self.chunk_frames // self.per_label
        events = [
            Event(e.frame - first, e.class_index, e.source, e.azimuth, e.elevation, e.distance, e.onscreen)
            for e in clip.events
            if first <= e.frame < first + n_labels
        ]
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, self.epoch, item))
            features, events = self.augment(features, events, rng)
        targets = self.format.encode(events, n_labels, self.num_classes, **self.encode_options)
        return torch.from_numpy(np.ascontiguousarray(features)), {k: torch.from_numpy(v) for k, v in targets.items()}

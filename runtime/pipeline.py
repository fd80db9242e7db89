"""Audio files through an exported model to DCASE CSVs: whole clips (offline) or streamed in blocks.

The torch-free twin of :func:`training.predict.predict_files`: the same features, windows (the
model's window, hop 2.5 s), overlap averaging, post-processing and CSV form (Cartesian for FOA, the
DCASE 2025 form for stereo), so ``seld-edge predict`` and ``seld-edge run`` of one model write the
same files. Every audio header is checked against the model before any work, and nothing is written
until every file has been processed, so bad input leaves no partial output; each CSV is written
atomically.
"""

import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
from tqdm import tqdm

from runtime.stream import LabelFrame, LatencyStats, StreamingSeld
from seld_edge.audio import check_audio_file, find_audio_files
from seld_edge.errors import SeldEdgeError
from seld_edge.features import FeatureConfig, features_from_file
from seld_edge.formats import Event, write_events
from seld_edge.inference import windowed_outputs
from seld_edge.model_metadata import ModelMetadata

HOP_SECONDS = 2.5
"""Hop between the offline windows (the window is the model's own), as in ``seld-edge predict``."""

BLOCK_SECONDS = 0.1
"""Block length of ``--stream``: what a live source delivers at a time."""


class Model(Protocol):
    """What the pipeline needs of a model (an :class:`runtime.model.OnnxModel`, or a TensorRT engine)."""

    @property
    def metadata(self) -> ModelMetadata: ...

    def __call__(self, features: np.ndarray) -> Mapping[str, np.ndarray]: ...


def csv_form(config: FeatureConfig) -> str:
    """The CSV form for a model's input: the DCASE 2025 form for stereo, 7-column Cartesian for FOA."""
    return "dcase2025" if config.in_channels == 2 else "cartesian"


def check_audio(path: Path, config: FeatureConfig) -> None:
    """Refuse, from its header, an audio file the model cannot take: one line naming file and numbers."""
    check_audio_file(path, config.sample_rate, config.in_channels, config.min_samples)


def plan(source: str | Path, out_dir: str | Path, config: FeatureConfig) -> list[tuple[Path, Path]]:
    """(audio file, CSV path) pairs for source (a file or a folder), after every check that needs no
    model run: each header against the model, CSV names unique, out_dir writable."""
    files = find_audio_files(source)
    for path in files:
        check_audio(path, config)
    out_dir = Path(out_dir)
    targets = [out_dir / f"{path.stem}.csv" for path in files]
    seen: dict[Path, Path] = {}
    for path, target in zip(files, targets, strict=True):
        if target in seen:
            raise SeldEdgeError(f"{seen[target]} and {path} would both write {target}; rename one")
        seen[target] = path
    _check_writable(out_dir)
    return list(zip(files, targets, strict=True))


def _check_writable(out_dir: Path) -> None:
    """Fail before any work when out_dir cannot take files (a file in the way, no permission, read-only)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=out_dir, prefix=".seld-edge-probe.")
    except OSError as err:
        raise SeldEdgeError(f"{out_dir}: cannot write ({err.strerror or err})") from None
    os.close(handle)
    os.unlink(probe)


def window_and_hop(metadata: ModelMetadata) -> tuple[int, int]:
    """Offline window and hop in feature frames: the model's window, and 2.5 s (at most the window)."""
    per_label = metadata.frames_per_label
    hop = max(per_label, round(HOP_SECONDS * metadata.label_rate_hz) * per_label)
    return metadata.window_frames, min(hop, metadata.window_frames)


def clip_events(model: Model, features: np.ndarray, tta: bool = False) -> list[Event]:
    """Events of one clip's features (C, T, F): windowed outputs, then the model's post-processing.

    tta averages over the 16 FOA rotations (seld_edge.inference.windowed_outputs).
    """
    meta = model.metadata
    window, hop = window_and_hop(meta)
    outputs = windowed_outputs(
        model, features, meta.frames_per_label, window, hop, meta.output_format, meta.num_classes, tta=tta
    )
    return meta.postprocess.to_events(outputs, meta.output_format, meta.num_classes)


def run_files(
    model: Model, source: str | Path, out_dir: str | Path, progress: bool = True, tta: bool = False
) -> list[Path]:
    """Offline: one DCASE CSV per audio file of source (a file or a folder, searched recursively).

    Any Model runs here: ONNX Runtime for `seld-edge run`, PyTorch for `seld-edge predict`.
    """
    config = model.metadata.feature_config
    pairs = plan(source, out_dir, config)
    results = [
        (target, clip_events(model, features_from_file(path, config), tta))
        for path, target in tqdm(pairs, desc="run", unit="file", disable=not progress)
    ]
    for target, events in results:
        write_events(target, events, form=csv_form(config))
    return [target for target, _ in results]


def stream_file(
    model: Model,
    path: str | Path,
    block_seconds: float = BLOCK_SECONDS,
    lookahead: int = 0,
    stats: LatencyStats | None = None,
) -> Iterator[LabelFrame]:
    """Stream one file through the model in blocks of block_seconds, yielding label frames as they come.

    The file is read block by block (constant memory); its header should have passed :func:`check_audio`.
    lookahead is in label frames (see :class:`runtime.stream.StreamingSeld`).
    """
    config = model.metadata.feature_config
    stream = StreamingSeld(model.metadata, model, lookahead, stats)
    blocksize = max(1, round(block_seconds * config.sample_rate))
    try:
        with sf.SoundFile(str(path)) as audio:
            for block in audio.blocks(blocksize, dtype="float32", always_2d=True):
                yield from stream.push(block.T)
        yield from stream.finish()
    except SeldEdgeError as err:
        raise SeldEdgeError(f"{path}: {err}") from None
    except sf.LibsndfileError as err:
        raise SeldEdgeError(f"{path}: not readable audio ({err})") from None


def stream_files(
    model: Model,
    source: str | Path,
    out_dir: str | Path,
    block_seconds: float = BLOCK_SECONDS,
    lookahead: int = 0,
    stats: LatencyStats | None = None,
) -> Iterator[tuple[Path, LabelFrame]]:
    """Streamed: yield (audio file, label frame) as each frame is computed; when every file is done,
    write one CSV per file (the same form as offline).

    The CSVs appear only once the iterator is exhausted, so an error in any file leaves none. The
    events are kept until then (their size is that of the CSVs); the stream itself is constant memory.
    """
    config = model.metadata.feature_config
    pairs = plan(source, out_dir, config)
    results: list[tuple[Path, list[Event]]] = []
    for path, target in pairs:
        events: list[Event] = []
        for frame in stream_file(model, path, block_seconds, lookahead, stats):
            events.extend(frame.events)
            yield path, frame
        results.append((target, events))
    for target, events in results:
        write_events(target, events, form=csv_form(config))

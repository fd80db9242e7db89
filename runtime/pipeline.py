"""Audio files through an exported model to DCASE CSVs: whole clips (offline) or streamed in blocks.

Used by ``seld-edge run`` with an exported model and by ``seld-edge predict`` with a PyTorch one: the
same features, windows (the model's window, hop 2.5 s), overlap averaging, post-processing and CSV
form (the output format's), so the two write the same files.

Offline, a recording is read, featurised, run and written piece by piece (FileFeatures, output_blocks,
PostProcessing.event_blocks), so memory does not grow with its length, and the CSV equals the one of
the whole clip computed at once (:func:`clip_events`). Every audio header is checked against the model
and every target against the file system before any work; the CSVs are written as one
:class:`~seld_edge.io.OutputSet`, so a failed run (bad input, a full disk) changes no file.
"""

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
from tqdm import tqdm

from runtime.stream import LabelFrame, LatencyStats, stream_blocks
from seld_edge.audio import check_audio_file
from seld_edge.errors import SeldEdgeError
from seld_edge.features import FileFeatures
from seld_edge.formats import Event, format_events
from seld_edge.formats.dataset import recordings
from seld_edge.formats.dcase_csv import csv_header, format_rows
from seld_edge.formats.label_rate import grid_blocks
from seld_edge.inference import (
    BATCH_SIZE,
    HOP_SECONDS,
    ArrayFeatures,
    FeatureSource,
    ModelOutputError,
    hop_labels,
    output_blocks,
)
from seld_edge.io import OutputSet
from seld_edge.model_metadata import ModelMetadata

BLOCK_SECONDS = 0.1
"""Block length of ``--stream``: what a live source delivers at a time."""

OFFLINE_BATCH = 1
"""Windows per model call offline: one, as the stream runs them, so that the model's activations take no
more memory than the stream's (16 windows of the shipped SELDnet held 190 MB more in ONNX Runtime).
Each window is computed on its own, so the outputs do not depend on it; on a CPU one window per call
was no slower."""


class Model(Protocol):
    """What the pipeline needs of a model (an :class:`runtime.model.OnnxModel`, or a TensorRT engine)."""

    @property
    def metadata(self) -> ModelMetadata: ...

    def __call__(self, features: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]: ...


Job = tuple[dict[str, Path], Path]
"""One clip to run: its recording for each input (by input name) and the CSV to write."""


def plan(source: str | Path, out_dir: str | Path, meta: ModelMetadata) -> list[Job]:
    """The clips of source (a file or a folder; STARSS layout for a model reading several recordings)
    and their CSV paths, after every check of the input that needs no model run: each header against
    the model, CSV names unique. (The targets are checked when the caller opens their OutputSet.)"""
    formats = list(dict.fromkeys(i.feature_config.audio_format for i in meta.inputs))
    jobs = []
    for clip in recordings(source, formats):
        files = {i.name: clip[i.feature_config.audio_format] for i in meta.inputs}
        for model_input in meta.inputs:
            config = model_input.feature_config
            check_audio_file(files[model_input.name], config.sample_rate, config.in_channels, config.min_samples)
        jobs.append((files, Path(out_dir) / f"{clip[formats[0]].stem}.csv"))
    seen: dict[Path, Path] = {}
    for files, target in jobs:
        first = next(iter(files.values()))
        if target in seen:
            raise SeldEdgeError(f"{seen[target]} and {first} would both write {target}; rename one")
        seen[target] = first
    return jobs


def clip_sources(meta: ModelMetadata, files: Mapping[str, Path]) -> dict[str, FeatureSource]:
    """The features of one clip by input name, each computed on demand from its input's recording."""
    return {i.name: FileFeatures(files[i.name], i.feature_config) for i in meta.inputs}


def grid_output_blocks(
    model: Model,
    sources: Mapping[str, FeatureSource],
    tta: bool = False,
    hop_seconds: float = HOP_SECONDS,
    batch_size: int = BATCH_SIZE,
) -> Iterator[dict[str, np.ndarray]]:
    """A clip's outputs on the 100 ms grid, block by block: windowed outputs at the model's rate
    (seld_edge.inference.output_blocks, with tta), then put on the grid."""
    meta = model.metadata
    blocks = output_blocks(model, sources, meta, hop_labels(meta, hop_seconds), tta, batch_size)
    return grid_blocks(blocks, meta.label_rate_hz)


def event_blocks(
    model: Model,
    sources: Mapping[str, FeatureSource],
    tta: bool = False,
    hop_seconds: float = HOP_SECONDS,
    batch_size: int = BATCH_SIZE,
) -> Iterator[list[Event]]:
    """A clip's events, block by block: :func:`grid_output_blocks`, then the model's post-processing."""
    meta = model.metadata
    blocks = grid_output_blocks(model, sources, tta, hop_seconds, batch_size)
    return meta.postprocess.event_blocks(blocks, meta.format, meta.num_classes)


def grid_outputs(
    model: Model, features: Mapping[str, np.ndarray], tta: bool = False, hop_seconds: float = HOP_SECONDS
) -> dict[str, np.ndarray]:
    """The grid outputs of a clip whose features (C, T, F) by input name are in memory."""
    blocks = list(grid_output_blocks(model, _in_memory(model.metadata, features), tta, hop_seconds))
    return {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}


def clip_events(
    model: Model,
    features: Mapping[str, np.ndarray],
    tta: bool = False,
    hop_seconds: float = HOP_SECONDS,
    batch_size: int = BATCH_SIZE,
) -> list[Event]:
    """The events of a clip whose features (C, T, F) by input name are in memory."""
    sources = _in_memory(model.metadata, features)
    return [e for events in event_blocks(model, sources, tta, hop_seconds, batch_size) for e in events]


def _in_memory(meta: ModelMetadata, features: Mapping[str, np.ndarray]) -> dict[str, FeatureSource]:
    missing = [i.name for i in meta.inputs if i.name not in features]
    if missing:
        raise SeldEdgeError(f"{meta.model} needs features for its inputs {missing}")
    return {i.name: ArrayFeatures(features[i.name]) for i in meta.inputs}


def run_files(
    model: Model,
    source: str | Path,
    out_dir: str | Path,
    progress: bool = True,
    tta: bool = False,
    label: str = "run",
) -> list[Path]:
    """Offline: one DCASE CSV per clip of source (a file or a folder, searched recursively).

    Any Model runs here: ONNX Runtime for `seld-edge run`, PyTorch for `seld-edge predict`; ``label``
    names the progress bar after the command. Each CSV is written as its events are decoded, into the
    set's staging folder; the set moves into out_dir when every clip is done.
    """
    meta = model.metadata
    form = meta.format.csv_form
    jobs = plan(source, out_dir, meta)
    with OutputSet(out_dir, [target for _, target in jobs]) as outputs:
        with tqdm(jobs, desc=label, unit="clip", disable=not progress) as bar:
            for files, target in bar:
                sources = clip_sources(meta, files)
                with outputs.open(target) as csv:
                    csv.write(csv_header(form).encode())
                    try:
                        for events in event_blocks(model, sources, tta, batch_size=OFFLINE_BATCH):
                            csv.write(format_rows(events, form).encode())
                    except ModelOutputError as err:
                        raise SeldEdgeError(f"{next(iter(files.values()))}: {err}") from None
    return [target for _, target in jobs]


def stream_file(
    model: Model,
    path: str | Path,
    block_seconds: float = BLOCK_SECONDS,
    lookahead: int = 0,
    stats: LatencyStats | None = None,
) -> Iterator[LabelFrame]:
    """Stream one file through the model in blocks of block_seconds, yielding label frames as they come.

    The file is read block by block (constant memory); its header should have passed :func:`plan`'s checks.
    lookahead is in label frames (see :class:`runtime.stream.StreamingSeld`).
    """
    config = model.metadata.feature_config
    blocksize = max(1, round(block_seconds * config.sample_rate))
    try:
        with sf.SoundFile(str(path)) as audio:
            blocks = (block.T for block in audio.blocks(blocksize, dtype="float32", always_2d=True))
            yield from stream_blocks(model.metadata, model, blocks, lookahead, stats)
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
    meta = model.metadata
    jobs = plan(source, out_dir, meta)
    with OutputSet(out_dir, [target for _, target in jobs]) as outputs:
        for files, target in jobs:
            (path,) = files.values()
            events: list[Event] = []
            for frame in stream_file(model, path, block_seconds, lookahead, stats):
                events.extend(frame.events)
                yield path, frame
            outputs.write_text(target, format_events(events, meta.format.csv_form))

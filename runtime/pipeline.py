"""Audio files through an exported model to DCASE CSVs: whole clips (offline) or streamed in blocks.

Used by ``seld-edge run`` with an exported model and by ``seld-edge predict`` with a PyTorch one: the
same features, windows (the model's window, hop 2.5 s), overlap averaging, post-processing and CSV
form (the output format's), so the two write the same files. Every audio header is checked against the
model before any work, and nothing is written until every file has been processed, so bad input leaves
no partial output; each CSV is written atomically.
"""

import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
from tqdm import tqdm

from runtime.stream import LabelFrame, LatencyStats, stream_blocks
from seld_edge.audio import check_audio_file
from seld_edge.errors import SeldEdgeError
from seld_edge.features import features_from_file
from seld_edge.formats import Event, write_events
from seld_edge.formats.dataset import recordings
from seld_edge.formats.label_rate import outputs_on_grid
from seld_edge.inference import HOP_SECONDS, hop_labels, windowed_outputs
from seld_edge.model_metadata import ModelMetadata

BLOCK_SECONDS = 0.1
"""Block length of ``--stream``: what a live source delivers at a time."""


class Model(Protocol):
    """What the pipeline needs of a model (an :class:`runtime.model.OnnxModel`, or a TensorRT engine)."""

    @property
    def metadata(self) -> ModelMetadata: ...

    def __call__(self, features: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]: ...


Job = tuple[dict[str, Path], Path]
"""One clip to run: its recording for each input (by input name) and the CSV to write."""


def plan(source: str | Path, out_dir: str | Path, meta: ModelMetadata) -> list[Job]:
    """The clips of source (a file or a folder; STARSS layout for a model reading several recordings)
    and their CSV paths, after every check that needs no model run: each header against the model, CSV
    names unique, out_dir writable."""
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
    _check_writable(Path(out_dir))
    return jobs


def _check_writable(out_dir: Path) -> None:
    """Fail before any work when out_dir cannot take files (a file in the way, no permission, read-only)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=out_dir, prefix=".seld-edge-probe.")
    except OSError as err:
        raise SeldEdgeError(f"{out_dir}: cannot write ({err.strerror or err})") from None
    os.close(handle)
    os.unlink(probe)


def clip_features(meta: ModelMetadata, files: Mapping[str, Path]) -> dict[str, np.ndarray]:
    """Features of one clip by input name, each from its input's recording."""
    return {i.name: features_from_file(files[i.name], i.feature_config) for i in meta.inputs}


def grid_outputs(
    model: Model, features: Mapping[str, np.ndarray], tta: bool = False, hop_seconds: float = HOP_SECONDS
) -> dict[str, np.ndarray]:
    """A clip's outputs on the 100 ms grid from its features (C, T, F) by input name: windowed outputs at
    the model's rate (seld_edge.inference.windowed_outputs, with tta), then put on the grid."""
    meta = model.metadata
    outputs = windowed_outputs(model, features, meta, hop_labels(meta, hop_seconds), tta=tta)
    return outputs_on_grid(outputs, meta.label_rate_hz)


def clip_events(
    model: Model, features: Mapping[str, np.ndarray], tta: bool = False, hop_seconds: float = HOP_SECONDS
) -> list[Event]:
    """Events of one clip: :func:`grid_outputs`, then the model's post-processing."""
    meta = model.metadata
    return meta.postprocess.to_events(grid_outputs(model, features, tta, hop_seconds), meta.format, meta.num_classes)


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
    names the progress bar after the command.
    """
    meta = model.metadata
    jobs = plan(source, out_dir, meta)
    results = [
        (target, clip_events(model, clip_features(meta, files), tta))
        for files, target in tqdm(jobs, desc=label, unit="clip", disable=not progress)
    ]
    for target, events in results:
        write_events(target, events, form=meta.format.csv_form)
    return [target for target, _ in results]


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
    results: list[tuple[Path, list[Event]]] = []
    for files, target in jobs:
        (path,) = files.values()
        events: list[Event] = []
        for frame in stream_file(model, path, block_seconds, lookahead, stats):
            events.extend(frame.events)
            yield path, frame
        results.append((target, events))
    for target, events in results:
        write_events(target, events, form=meta.format.csv_form)

"""FOA data sets in the STARSS layout to the DCASE 2025 stereo layout (`seld-edge convert stereo`).

    SRC/foa_dev/<split>/<stem>.wav          ->  DST/stereo_dev/<split>/<stem>_<k:03d>.wav
    SRC/metadata_dev/<split>/<stem>.csv     ->  DST/metadata_dev/<split>/<stem>_<k:03d>.csv

Each recording is cut into clips of ``clip_seconds`` (5 s, as the DCASE 2025 stereo set and Stereo-RCnet's
90,000 clips from the DCASE 2024 FOA synthetic set), k = 0, 1, ... in time order; a tail shorter than
a clip is left out, so every clip has the full length. Audio: L = W + Y, R = W - Y of the ACN/SN3D FOA
(seld_edge.audio.foa_to_stereo), written as 32-bit float WAV, so the clip holds exactly that sum and
difference of the source samples (a 16-bit file would clip wherever |W +- Y| exceeds 1, and round).
Metadata: the header row ``frame,class,source,azimuth,distance,onscreen``, frames renumbered from 0 in
each clip, azimuth folded to [-90, 90], distance in cm, and onscreen decided from the unfolded
direction as the stereo synthesis decides it (seld_edge.synth.dataset.stereo_labels).

The official 2025 clips were also rotated, each to the direction of its video's view before the
M/S conversion; without video there is no view to turn to, so the FOA's own front is kept.

All inputs are checked before anything is written, the output is built in a hidden folder beside DST
and renamed to DST only when complete, so a failed run leaves nothing behind.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from seld_edge.audio import audio_info, check_audio_file, foa_to_stereo, read_audio, write_audio
from seld_edge.errors import SeldEdgeError
from seld_edge.formats import Clip, find_clips, read_events
from seld_edge.formats.dcase_csv import Event, write_events
from seld_edge.formats.label_rate import DCASE_LABEL_RATE_HZ
from seld_edge.synth.dataset import AUDIO_FOLDERS, METADATA_FOLDER, stereo_labels


@dataclass(frozen=True)
class Conversion:
    """What `convert stereo` wrote: recordings read, clips written, seconds of tails left out."""

    recordings: int
    clips: int
    dropped_seconds: float


@dataclass(frozen=True)
class _Source:
    clip: Clip
    sample_rate: int
    n_samples: int
    events: list[Event] | None


def convert_to_stereo(
    src_root: str | Path, dst_root: str | Path, clip_seconds: float = 5.0, progress: bool = True
) -> Conversion:
    """Convert every FOA recording of SRC (and its metadata, where it has some) into stereo clips in DST.

    DST must not exist, or be an empty folder. Errors (SeldEdgeError, one line): no foa_dev/ in SRC, a
    recording that is not 4-channel audio or not a whole number of samples per clip, metadata without
    distances, a clip length that is not a whole number of 100 ms label frames, no recording as long as
    one clip.
    """
    src_root, dst_root = Path(src_root), Path(dst_root)
    frames_per_clip = _frames_per_clip(clip_seconds)
    if dst_root.exists() and (not dst_root.is_dir() or any(dst_root.iterdir())):
        raise SeldEdgeError(f"{dst_root}: already exists and is not an empty folder; choose a new one")
    sources = [_check_source(clip, clip_seconds) for clip in find_clips(src_root, AUDIO_FOLDERS["foa"])]
    if not any(s.n_samples >= _clip_samples(s, clip_seconds) for s in sources):
        raise SeldEdgeError(f"{src_root}: no recording is {clip_seconds:g} s long; nothing to cut")
    dst_root.parent.mkdir(parents=True, exist_ok=True)
    # A private folder of a unique name beside DST; the output is built in a folder inside it, made with
    # the user's permissions (mkdtemp's own are owner-only), and renamed to DST when complete.
    scratch = Path(tempfile.mkdtemp(dir=dst_root.parent, prefix=f".{dst_root.name}."))
    try:
        building = scratch / dst_root.name
        building.mkdir()
        clips = 0
        for source in tqdm(sources, desc="convert", unit="file", disable=not progress):
            clips += _write_clips(source, building, clip_seconds, frames_per_clip)
        os.replace(building, dst_root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    dropped = sum((s.n_samples % _clip_samples(s, clip_seconds)) / s.sample_rate for s in sources)
    return Conversion(len(sources), clips, dropped)


def _frames_per_clip(clip_seconds: float) -> int:
    frames = clip_seconds * DCASE_LABEL_RATE_HZ
    if not clip_seconds > 0 or abs(frames - round(frames)) > 1e-9:
        raise SeldEdgeError(
            f"--clip-seconds must be a positive multiple of 0.1 s (the label frame), got {clip_seconds}"
        )
    return round(frames)


def _clip_samples(source: _Source, clip_seconds: float) -> int:
    return round(clip_seconds * source.sample_rate)


def _check_source(clip: Clip, clip_seconds: float) -> _Source:
    """The recording's header and its metadata, read and checked before anything is written."""
    n_samples = check_audio_file(clip.audio, channels=4)
    sample_rate = audio_info(clip.audio)[0]
    if abs(clip_seconds * sample_rate - round(clip_seconds * sample_rate)) > 1e-6:
        raise SeldEdgeError(f"{clip.audio}: {clip_seconds:g} s is not a whole number of samples at {sample_rate} Hz")
    events = None
    if clip.metadata is not None:
        events = read_events(clip.metadata, reference=True)
        undistanced = [e.frame for e in events if e.distance is None]
        if undistanced:
            raise SeldEdgeError(
                f"{clip.metadata}: no distance column (frame {undistanced[0]}); DCASE 2025 metadata needs distances"
            )
    return _Source(clip, sample_rate, n_samples, events)


def _write_clips(source: _Source, root: Path, clip_seconds: float, frames_per_clip: int) -> int:
    """Cut one recording into stereo clips (and their metadata) under root; returns the number of clips."""
    stereo = foa_to_stereo(read_audio(source.clip.audio, channels=4))
    size = _clip_samples(source, clip_seconds)
    n_clips = stereo.shape[1] // size
    for k in range(n_clips):
        name = f"{source.clip.name}_{k:03d}"
        write_audio(
            root / AUDIO_FOLDERS["stereo"] / source.clip.folder / f"{name}.wav",
            stereo[:, k * size : (k + 1) * size],
            source.sample_rate,
            subtype="FLOAT",
        )
        if source.events is not None:
            first = k * frames_per_clip
            events = [e.at_frame(e.frame - first) for e in source.events if first <= e.frame < first + frames_per_clip]
            write_events(
                root / METADATA_FOLDER / source.clip.folder / f"{name}.csv", stereo_labels(events), "dcase2025"
            )
    return n_clips

"""Writing synthetic scenes in the STARSS23 / DCASE 2025 layout (docs/data.md).

    OUT/foa_dev/dev-train-synth/fold1_room{r}_mix{k:03d}.wav      (mic_dev/ for "mic", stereo_dev/ for "stereo")
    OUT/foa_dev/dev-test-synth/fold2_room{r}_mix{k:03d}.wav
    OUT/metadata_dev/<same split folder>/<same stem>.csv

"foa,mic" writes foa_dev/ and mic_dev/ recordings of the same scenes, which share one metadata file.

Scene k of a split is drawn from its own generator seeded by (seed, split, k), and the geometry of
room r by (seed, split, r), so a data set with more scenes keeps the earlier ones byte for byte.

A data set is written as one set of files (seld_edge.io.OutputSet): an interrupted or failed run
(a full disk) changes nothing in OUT, and a run into a folder that holds an earlier synthetic data set
replaces it whole, removing the scenes the new one does not have (with fewer scenes, another seed or
other formats), so OUT never mixes two data sets.
"""

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from seld_edge.audio import foa_to_stereo, write_audio
from seld_edge.errors import SeldEdgeError
from seld_edge.formats.dcase_csv import Event, write_events
from seld_edge.geometry import fold_azimuth_front
from seld_edge.io import OutputSet
from seld_edge.synth.scene import MAX_SECONDS, MIN_SECONDS, SAMPLE_RATE, generate_scene_formats
from seld_edge.synth.spatial import sample_room

AUDIO_FOLDERS = {"foa": "foa_dev", "mic": "mic_dev", "stereo": "stereo_dev"}
METADATA_FOLDER = "metadata_dev"
SPLITS = (("dev-train-synth", 1), ("dev-test-synth", 2))  # split folder, fold number
ROOMS_PER_SPLIT = 3
SCENE_STREAM, ROOM_STREAM = 0, 1  # keep the scene and room generators of equal indices apart
ONSCREEN_AZIMUTH_DEG = 50.0  # DCASE 2025: the camera's field of view
ONSCREEN_ELEVATION_DEG = 30.0
SCENE_FILE = re.compile(r"fold\d+_room\d+_mix\d{3,}\.(wav|csv)")


def generate_dataset(
    out_dir: str | Path,
    fmt: str | Sequence[str] = "foa",
    n_train: int = 24,
    n_test: int = 8,
    seconds: float = 30.0,
    seed: int = 0,
    reflections: bool = True,
    progress: bool = True,
) -> list[Path]:
    """Write n_train + n_test synthetic scenes with labels under out_dir; returns the audio paths
    (per scene, one per format in the order given).

    fmt names the formats, as a sequence or comma-separated ("foa,mic"): "foa" writes 4-channel FOA,
    "mic" the tetrahedral microphone array (:mod:`seld_edge.synth.mic_array`), both with 6-column
    reference metadata (distance in cm) shared by the two; "stereo" (alone: its metadata differ) writes
    L = W + Y, R = W - Y with DCASE 2025 metadata. The files are written as one set (see the module
    docstring): all of them or, on any error, none; an earlier synthetic data set in out_dir is replaced.
    """
    formats = parse_formats(fmt)
    if n_train < 0 or n_test < 0:
        raise SeldEdgeError(f"scene counts must not be negative (train {n_train}, test {n_test})")
    if seed < 0:
        raise SeldEdgeError(f"seed must not be negative, got {seed}")
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:  # NaN fails too
        raise SeldEdgeError(f"--seconds must be between {MIN_SECONDS:g} and {MAX_SECONDS:g}, got {seconds}")
    out_dir = Path(out_dir)
    rendered = ("foa",) if formats == ("stereo",) else formats  # stereo is computed from FOA
    jobs = [(split, k) for split, count in enumerate((n_train, n_test)) for k in range(1, count + 1)]
    paths = {job: _scene_paths(out_dir, formats, *job) for job in jobs}
    targets = [path for audio, metadata in paths.values() for path in (*audio, metadata)]
    written = []
    with OutputSet(out_dir, targets) as outputs, tqdm(jobs, desc="synth", unit="scene", disable=not progress) as bar:
        for split, k in bar:
            room_index = 1 + (k - 1) % ROOMS_PER_SPLIT
            room = sample_room(np.random.default_rng([seed, split, ROOM_STREAM, room_index]))
            rng = np.random.default_rng([seed, split, SCENE_STREAM, k])
            audio, events = generate_scene_formats(seconds, rng, rendered, SAMPLE_RATE, reflections, room=room)
            audio_paths, metadata_path = paths[split, k]
            for name, audio_path in zip(formats, audio_paths, strict=True):
                recording = foa_to_stereo(audio["foa"]) if name == "stereo" else audio[name]
                write_audio(audio_path, recording, SAMPLE_RATE, outputs=outputs)
                written.append(audio_path)
            if "stereo" in formats:
                write_events(metadata_path, stereo_labels(events), "dcase2025", outputs=outputs)
            else:
                write_events(metadata_path, events, "polar", outputs=outputs)
        for stale in sorted(set(earlier_scene_files(out_dir)) - set(targets)):
            outputs.remove(stale)
    return written


def _scene_paths(out_dir: Path, formats: Sequence[str], split: int, k: int) -> tuple[list[Path], Path]:
    """The audio file of each format and the metadata file of scene k of a split."""
    folder, fold = SPLITS[split]
    stem = f"fold{fold}_room{1 + (k - 1) % ROOMS_PER_SPLIT}_mix{k:03d}"
    audio = [out_dir / AUDIO_FOLDERS[name] / folder / f"{stem}.wav" for name in formats]
    return audio, out_dir / METADATA_FOLDER / folder / f"{stem}.csv"


def earlier_scene_files(out_dir: Path) -> list[Path]:
    """The files of a synthetic data set already in out_dir: scene-named files in its split folders."""
    folders = [out_dir / top / split for top in (*AUDIO_FOLDERS.values(), METADATA_FOLDER) for split, _ in SPLITS]
    return [p for folder in folders if folder.is_dir() for p in folder.iterdir() if SCENE_FILE.fullmatch(p.name)]


def parse_formats(fmt: str | Sequence[str]) -> tuple[str, ...]:
    """The formats of "foa", "mic", "stereo", "foa,mic" (or a sequence of names), checked."""
    names = tuple(name.strip() for name in (fmt.split(",") if isinstance(fmt, str) else fmt))
    for name in names:
        if name not in AUDIO_FOLDERS:
            raise SeldEdgeError(f"unknown synth format {name!r}; expected one of {', '.join(AUDIO_FOLDERS)}")
    if not names or len(set(names)) != len(names):
        raise SeldEdgeError(f"synth formats must be distinct and at least one, got {fmt!r}")
    if "stereo" in names and len(names) > 1:
        raise SeldEdgeError("stereo cannot be written with other formats: its metadata differ (DCASE 2025)")
    return names


def stereo_labels(events: list[Event]) -> list[Event]:
    """DCASE 2025 labels: azimuth folded to [-90, 90] (a stereo pair cannot tell front from back),
    onscreen = 1 when the unfolded direction is inside the camera's +-50 deg by +-30 deg view."""
    return [
        replace(
            e,
            azimuth=float(fold_azimuth_front(e.azimuth)),
            onscreen=int(abs(e.azimuth) <= ONSCREEN_AZIMUTH_DEG and abs(e.elevation) <= ONSCREEN_ELEVATION_DEG),
        )
        for e in events
    ]

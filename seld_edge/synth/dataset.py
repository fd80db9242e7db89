"""Writing synthetic scenes in the STARSS23 / DCASE 2025 layout (reference/dcase.md).

    OUT/foa_dev/dev-train-synth/fold1_room{r}_mix{k:03d}.wav        (or stereo_dev/ for fmt="stereo")
    OUT/foa_dev/dev-test-synth/fold2_room{r}_mix{k:03d}.wav
    OUT/metadata_dev/<same split folder>/<same stem>.csv

Scene k of a split is drawn from its own generator seeded by (seed, split, k), and the geometry of
room r by (seed, split, r), so a data set with more scenes keeps the earlier ones byte for byte.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from seld_edge.audio import foa_to_stereo, write_audio
from seld_edge.errors import SeldEdgeError
from seld_edge.formats.dcase_csv import Event, write_events
from seld_edge.geometry import fold_azimuth_front
from seld_edge.synth.scene import SAMPLE_RATE, generate_scene
from seld_edge.synth.spatial import sample_room

AUDIO_FOLDERS = {"foa": "foa_dev", "stereo": "stereo_dev"}
METADATA_FOLDER = "metadata_dev"
SPLITS = (("dev-train-synth", 1), ("dev-test-synth", 2))  # split folder, fold number
ROOMS_PER_SPLIT = 3
SCENE_STREAM, ROOM_STREAM = 0, 1  # keep the scene and room generators of equal indices apart
ONSCREEN_AZIMUTH_DEG = 50.0  # DCASE 2025: the camera's field of view
ONSCREEN_ELEVATION_DEG = 30.0


def generate_dataset(
    out_dir: str | Path,
    fmt: str = "foa",
    n_train: int = 24,
    n_test: int = 8,
    seconds: float = 30.0,
    seed: int = 0,
    reflections: bool = True,
    progress: bool = True,
) -> list[Path]:
    """Write n_train + n_test synthetic scenes with labels under out_dir; returns the audio paths.

    fmt "foa" writes 4-channel FOA with 6-column reference metadata (distance in cm); "stereo" writes
    L = W + Y, R = W - Y with DCASE 2025 metadata. Existing files of the same names are replaced;
    every file is written atomically, so an interrupted run leaves no partial file.
    """
    if fmt not in AUDIO_FOLDERS:
        raise SeldEdgeError(f"unknown synth format {fmt!r}; expected one of {', '.join(AUDIO_FOLDERS)}")
    if n_train < 0 or n_test < 0:
        raise SeldEdgeError(f"scene counts must not be negative (train {n_train}, test {n_test})")
    if seed < 0:
        raise SeldEdgeError(f"seed must not be negative, got {seed}")
    out_dir = Path(out_dir)
    jobs = [(split, k) for split, count in enumerate((n_train, n_test)) for k in range(1, count + 1)]
    written = []
    for split, k in tqdm(jobs, desc="synth", unit="scene", disable=not progress):
        folder, fold = SPLITS[split]
        room_index = 1 + (k - 1) % ROOMS_PER_SPLIT
        room = sample_room(np.random.default_rng([seed, split, ROOM_STREAM, room_index]))
        rng = np.random.default_rng([seed, split, SCENE_STREAM, k])
        foa, events = generate_scene(seconds, rng, SAMPLE_RATE, reflections, room=room)
        stem = f"fold{fold}_room{room_index}_mix{k:03d}"
        audio_path = out_dir / AUDIO_FOLDERS[fmt] / folder / f"{stem}.wav"
        metadata_path = out_dir / METADATA_FOLDER / folder / f"{stem}.csv"
        if fmt == "stereo":
            write_audio(audio_path, foa_to_stereo(foa), SAMPLE_RATE)
            write_events(metadata_path, stereo_labels(events), "dcase2025")
        else:
            write_audio(audio_path, foa, SAMPLE_RATE)
            write_events(metadata_path, events, "polar")
        written.append(audio_path)
    return written


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

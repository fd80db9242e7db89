"""Finding the clips of a STARSS22/23, DCASE 2024 or DCASE 2025 data set on disk.

Layout (reference/dcase.md)::

    ROOT/foa_dev/dev-train-sony/fold3_room21_mix001.wav     (or mic_dev/, stereo_dev/)
    ROOT/metadata_dev/dev-train-sony/fold3_room21_mix001.csv

A clip's split is the folder it sits in: folders whose name contains "train" are training data,
those containing "test" held-out data. Audio without metadata is allowed (inference-only sets).
"""

from dataclasses import dataclass
from pathlib import Path

from seld_edge.audio import AUDIO_SUFFIXES
from seld_edge.errors import SeldEdgeError

AUDIO_FOLDERS = ("foa_dev", "mic_dev", "stereo_dev", "foa_eval", "mic_eval", "stereo_eval")
METADATA_FOLDER = "metadata_dev"


@dataclass(frozen=True)
class Clip:
    """One recording: its audio file, its metadata CSV (if any) and the split folder it sits in."""

    name: str
    audio: Path
    metadata: Path | None
    folder: str

    @property
    def split(self) -> str:
        if "train" in self.folder:
            return "train"
        if "test" in self.folder:
            return "test"
        return "other"


def find_clips(root: str | Path, audio_folder: str = "foa_dev") -> list[Clip]:
    """All clips under ROOT/audio_folder, paired with ROOT/metadata_dev by split folder and name."""
    root = Path(root)
    if not root.is_dir():
        raise SeldEdgeError(f"{root}: not a directory")
    if audio_folder not in AUDIO_FOLDERS:
        raise SeldEdgeError(f"unknown audio folder {audio_folder!r}; expected one of {AUDIO_FOLDERS}")
    audio_root = root / audio_folder
    if not audio_root.is_dir():
        present = [f for f in AUDIO_FOLDERS if (root / f).is_dir()]
        hint = f" (found {', '.join(present)})" if present else ""
        raise SeldEdgeError(f"{root}: no {audio_folder}/ folder{hint}")
    clips = []
    for audio in sorted(p for p in audio_root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        folder = audio.parent.relative_to(audio_root).as_posix()
        metadata = root / METADATA_FOLDER / folder / f"{audio.stem}.csv"
        clips.append(Clip(audio.stem, audio, metadata if metadata.is_file() else None, folder))
    if not clips:
        raise SeldEdgeError(f"{audio_root}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return clips


def find_csvs(root: str | Path) -> dict[str, Path]:
    """CSV files under ROOT searched recursively, keyed by file stem (flat or split folders).

    Two files with the same stem are ambiguous for pairing references and predictions: refused.
    """
    root = Path(root)
    if not root.is_dir():
        raise SeldEdgeError(f"{root}: not a directory")
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.csv")):
        if path.stem in found:
            raise SeldEdgeError(f"{root}: two files named {path.name} ({found[path.stem]} and {path})")
        found[path.stem] = path
    return found

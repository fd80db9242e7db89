"""Finding the clips of a STARSS22/23, DCASE 2024 or DCASE 2025 data set on disk.

Layout (docs/data.md)::

    ROOT/foa_dev/dev-train-sony/fold3_room21_mix001.wav     (or mic_dev/, stereo_dev/)
    ROOT/metadata_dev/dev-train-sony/fold3_room21_mix001.csv

A clip's split is the folder it sits in: folders whose name contains "train" are training data,
those containing "test" held-out data. Audio without metadata is allowed (inference-only sets).

The same clip's recordings in several formats share their split folder and name
(``foa_dev/dev-test-sony/x.wav`` and ``mic_dev/dev-test-sony/x.wav``): :func:`recordings` finds them
for a model whose inputs read more than one format.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from seld_edge.audio import AUDIO_SUFFIXES, find_audio_files
from seld_edge.errors import SeldEdgeError

AUDIO_FORMATS = ("foa", "mic", "stereo")
AUDIO_FOLDERS = tuple(f"{fmt}_{part}" for part in ("dev", "eval") for fmt in AUDIO_FORMATS)
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


def recordings(source: str | Path, audio_formats: Sequence[str]) -> list[dict[str, Path]]:
    """Each clip of source as {audio format: file}, for every format in audio_formats.

    With one format, source is any audio file or folder (searched recursively). With several, source
    is a data set in the STARSS layout, or a file or folder inside one of its ``{format}_dev`` (or
    ``_eval``) folders; a clip is a split folder and name found in any of the formats' folders, and
    each of its recordings sits at the same place in the other formats' folders. A missing recording
    is an error naming the file expected, before any work.
    """
    source = Path(source)
    if len(audio_formats) == 1:
        return [{audio_formats[0]: path} for path in find_audio_files(source)]
    if source.is_dir() and any((source / f"{fmt}_dev").is_dir() for fmt in audio_formats):
        base, part, inner = source, "dev", Path()
    else:
        anchor = _format_folder(source)
        if anchor is None:
            folders = " and ".join(f"{fmt}_dev/" for fmt in audio_formats)
            raise SeldEdgeError(
                f"{source}: this model reads {' and '.join(audio_formats)} recordings; give a data set in the "
                f"STARSS layout ({folders}) or a file or folder inside one"
            )
        index, _, part = anchor
        base, inner = Path(*source.parts[:index]), Path(*source.parts[index + 1 :])
    clips: set[Path] = set()
    for fmt in audio_formats:
        folder = base / f"{fmt}_{part}"
        where = folder / inner
        if where.is_file():
            clips.add(inner.with_suffix(""))
        elif where.is_dir():
            clips |= {
                p.relative_to(folder).with_suffix("") for p in where.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
            }
    if not clips:
        raise SeldEdgeError(f"{source}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    found = []
    for clip in sorted(clips):
        files = {fmt: _audio_file(base / f"{fmt}_{part}" / clip) for fmt in audio_formats}
        present = next(path for path in files.values() if path is not None)
        for fmt, path in files.items():
            if path is None:
                raise SeldEdgeError(f"{present}: no {fmt} recording of this clip ({base / f'{fmt}_{part}' / clip}.wav)")
        found.append(files)
    return found


def _audio_file(stem: Path) -> Path | None:
    """The audio file stem.wav or stem.flac, if there is one."""
    return next((p for p in (stem.with_name(stem.name + s) for s in AUDIO_SUFFIXES) if p.is_file()), None)


def _format_folder(path: Path) -> tuple[int, str, str] | None:
    """(index in path.parts, format, dev|eval) of the innermost {format}_{dev|eval} folder on path."""
    for index in range(len(path.parts) - 1, -1, -1):
        fmt, _, part = path.parts[index].rpartition("_")
        if fmt in AUDIO_FORMATS and part in ("dev", "eval"):
            return index, fmt, part
    return None

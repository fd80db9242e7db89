"""Reading and writing multichannel audio with the checks a user's files need.

Audio arrays are float32 (channels, samples). Sample-rate policy: a file at another rate than the
feature config asks for is refused with a clear error rather than resampled, so that features (and
therefore parity between PyTorch and the runtime) never depend on a resampler's quality. Convert with
e.g. ``sox in.wav -r 24000 out.wav``.
"""

import io
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from seld_edge.errors import SeldEdgeError
from seld_edge.io import OutputSet, StagedFile, atomic_write

AUDIO_SUFFIXES = (".wav", ".flac")
AUDIO_CONTAINERS = ("WAV", "WAVEX", "RF64", "FLAC")
"""What libsndfile may find inside an audio file: WAV (and its extended forms) and FLAC, whose headers state
their length, so that a cut file is noticed (libsndfile reads a cut OGG as a shorter recording)."""


def find_audio_files(path: str | Path) -> list[Path]:
    """The audio file at path, or every audio file under the folder path (sorted, recursive)."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            suffixes = " or ".join(AUDIO_SUFFIXES)
            raise SeldEdgeError(f"{path}: not a {suffixes} file (convert it, e.g. with ffmpeg or sox)")
        return [path]
    if not path.is_dir():
        raise SeldEdgeError(f"{path}: no such file or directory")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise SeldEdgeError(f"{path}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return files


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """(sample_rate, channels, frames) from the header; SeldEdgeError when it cannot be read or is neither
    WAV nor FLAC inside."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise SeldEdgeError(f"{path}: not readable audio ({_reason(err)})") from None
    if info.format not in AUDIO_CONTAINERS:
        raise SeldEdgeError(
            f"{path}: {info.format} audio is not read, only WAV and FLAC (a cut {info.format} file cannot be told "
            "from a short one); convert it, e.g. with ffmpeg or sox"
        )
    return info.samplerate, info.channels, info.frames


def check_audio_file(
    path: str | Path, sample_rate: int | None = None, channels: int | None = None, min_samples: int = 1
) -> int:
    """Check from its header that an audio file can be used; returns its length in samples.

    Errors (SeldEdgeError, naming the file): unreadable or truncated file, fewer than min_samples
    samples, a sample rate or channel count other than the ones asked for. Cheap, so a whole folder
    is checked before any output is written.
    """
    path = Path(path)
    file_rate, file_channels, file_frames = audio_info(path)
    if sample_rate is not None and file_rate != sample_rate:
        raise SeldEdgeError(
            f"{path}: sample rate {file_rate} Hz, expected {sample_rate} Hz "
            f"(resample it first, e.g. sox in.wav -r {sample_rate} out.wav)"
        )
    if channels is not None and file_channels != channels:
        raise SeldEdgeError(f"{path}: {file_channels} channels, expected {channels}")
    if file_frames <= 0:
        raise SeldEdgeError(f"{path}: contains no audio samples")
    if file_frames < min_samples:
        raise SeldEdgeError(f"{path}: {file_frames} samples is too short (at least {min_samples} needed)")
    _check_wav_not_truncated(path)
    return file_frames


def read_audio(
    path: str | Path,
    sample_rate: int | None = None,
    channels: int | None = None,
    min_samples: int = 1,
) -> np.ndarray:
    """Read (channels, samples) float32 audio, refusing what features cannot be computed from.

    Errors as :func:`check_audio_file`, and NaN or infinite samples.
    """
    frames = check_audio_file(path, sample_rate, channels, min_samples)
    try:
        data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise SeldEdgeError(f"{path}: not readable audio ({_reason(err)})") from None
    if len(data) < frames:
        raise SeldEdgeError(f"{path}: truncated ({len(data)} of {frames} samples readable)")
    if not np.isfinite(data).all():
        raise SeldEdgeError(f"{path}: contains NaN or infinite samples")
    return np.ascontiguousarray(data.T)


def write_audio(
    path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16", outputs: OutputSet | None = None
) -> None:
    """Write (channels, samples) audio as a WAV file, atomically or into a set of outputs (written together);
    values are clipped to [-1, 1] by the PCM codec."""
    audio = np.asarray(audio, dtype=np.float32)

    def write(handle: StagedFile) -> None:
        # Encoded in memory first: libsndfile's write callbacks swallow the error of a full disk.
        encoded = io.BytesIO()
        sf.write(encoded, audio.T, sample_rate, subtype=subtype, format="WAV")
        handle.write(encoded.getbuffer())

    if outputs is None:
        atomic_write(path, write)
    else:
        outputs.write(path, write)


def foa_to_stereo(foa: np.ndarray) -> np.ndarray:
    """Stereo (L, R) from ACN/SN3D FOA (W, Y, Z, X): L = W + Y, R = W - Y (DCASE 2025)."""
    if foa.shape[0] != 4:
        raise SeldEdgeError(f"FOA to stereo needs 4 channels, got {foa.shape[0]}")
    w, y = foa[0], foa[1]
    return np.stack([w + y, w - y]).astype(np.float32)


def _check_wav_not_truncated(path: Path) -> None:
    """Refuse a RIFF/WAVE file whose data chunk is shorter than its header says.

    libsndfile silently shortens such files (an interrupted copy, a full disk), which would shift
    every label after the cut; the header's declared size is the only record of the loss.
    """
    with open(path, "rb") as handle:
        if handle.read(12)[8:12] != b"WAVE":
            return
        file_size = path.stat().st_size
        while header := handle.read(8):
            if len(header) < 8:
                return
            chunk_id, size = struct.unpack("<4sI", header)
            if chunk_id == b"data":
                available = file_size - handle.tell()
                if size != 0xFFFFFFFF and available < size:
                    raise SeldEdgeError(f"{path}: truncated (data chunk has {available} of {size} bytes)")
                return
            handle.seek(size + (size & 1), 1)


def _reason(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__

"""Audio -> feature tensor for any :class:`FeatureConfig` (numpy, torch-free): of an array in memory
(:func:`compute_features`), or of a file read block by block (:class:`FileFeatures`), with equal values."""

from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
from numpy.lib.stride_tricks import sliding_window_view

from seld_edge.audio import check_audio_file, read_audio
from seld_edge.errors import SeldEdgeError
from seld_edge.features.config import FeatureConfig
from seld_edge.features.functional import (
    centred_frames,
    db_floor,
    decibels,
    frame_spectra,
    hann_window,
    intensity_vector,
    mel_filterbank,
    power_spectrum,
    power_to_db,
)

# Frames processed together: the spectra of 64 frames stay in cache and in glibc's heap, where one
# block of a whole minute (a fresh ~50 MB mmap per call) page-faults. Measured on one core, 60 s of
# 4-channel audio: 38 ms in blocks of 64 frames, 75 ms in one block.
FRAMES_PER_BLOCK = 64


@lru_cache(maxsize=16)
def filterbank_for(config: FeatureConfig) -> np.ndarray | None:
    """The config's mel matrix (n_fft // 2 + 1, n_mels), or None for linear spectrograms. Cached."""
    if not config.n_mels:
        return None
    fb = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    fb.setflags(write=False)
    return fb


@lru_cache(maxsize=16)
def window_for(config: FeatureConfig) -> np.ndarray:
    window = hann_window(config.win_length, config.n_fft)
    window.setflags(write=False)
    return window


def compute_features(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Features (C_out, T, F) float32 of (in_channels, N) audio at config.sample_rate.

    Channels: one log spectrogram per input channel (in file order), then the intensity vector
    x, y, z when config.iv_norm is set.
    """
    if audio.ndim != 2 or audio.shape[0] != config.in_channels:
        raise ValueError(f"expected audio of shape ({config.in_channels}, N), got {audio.shape}")
    frames = centred_frames(audio, config.n_fft, config.hop_length, config.n_frames(audio.shape[-1]))
    features = np.empty((config.out_channels, frames.shape[1], config.n_bins), dtype=np.float32)
    window = window_for(config)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused by check_finite, in one line
        for start in range(0, frames.shape[1], FRAMES_PER_BLOCK):
            block = slice(start, start + FRAMES_PER_BLOCK)
            features[:, block] = linear_features(frame_spectra(frames[:, block], window), config)
        return check_finite(log_features(features, config), audio)


def linear_features(spec: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Features before the dB step, frame by frame: (projected) power spectra and intensity vector.

    Every frame depends on its own STFT frame only, so streaming computes them as frames complete;
    the dB step (:func:`log_features`) needs a maximum over frames and comes last.
    """
    power = power_spectrum(spec)
    linear = np.concatenate([power, intensity_vector(spec, config.iv_norm, power)]) if config.iv_norm else power
    fb = filterbank_for(config)
    return np.ascontiguousarray(linear if fb is None else linear @ fb, dtype=np.float32)


def log_features(linear: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The dB step, in place on the spectral channels; top_db is relative to these frames' maximum."""
    linear[: config.in_channels] = power_to_db(linear[: config.in_channels], config.top_db)
    return linear


# Two float32 computations of a linear spectrum (numpy's and the torch twin's) are compared only on bins
# within this range of their channel's loudest bin in the clip: FFT round-off is relative to the frame, not
# the bin, so far below it the two legitimately disagree in dB by 1e-2 and more. Mel bands average it away.
COMPARED_RANGE_DB = 60.0


def compared_bins(reference: np.ndarray, config: FeatureConfig) -> np.ndarray | None:
    """The mask (the shape of reference, (..., C, T, F)) of the bins where two computations of config's
    features are held to agree: None (every bin) for mel kinds; for a linear one, each spectral channel's
    loud bins (:data:`COMPARED_RANGE_DB`) and, on the intensity vector, the omnidirectional channel's."""
    if config.n_mels is not None:
        return None
    spectra = reference[..., : config.in_channels, :, :]
    loud = spectra > spectra.max(axis=(-2, -1), keepdims=True) - COMPARED_RANGE_DB
    iv = np.repeat(loud[..., :1, :, :], reference.shape[-3] - config.in_channels, axis=-3)
    return np.concatenate([loud, iv], axis=-3)


def feature_difference(reference: np.ndarray, other: np.ndarray, config: FeatureConfig) -> float:
    """The largest absolute difference between two computations of the same features (..., C, T, F) on
    :func:`compared_bins` (dB on the spectral channels, unit-vector components on the intensity vector)."""
    error = np.abs(np.asarray(other, np.float64) - reference)
    mask = compared_bins(reference, config)
    return float(error.max() if mask is None else error[mask].max())


def check_finite(features: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """features, unless some are NaN or infinite: samples so loud (finite, but beyond about 1e19 in float32)
    that their power overflows. A model would turn them into NaN outputs and no events, silently."""
    if not np.isfinite(features).all():
        raise SeldEdgeError(_not_finite(audio))
    return features


def _not_finite(audio: np.ndarray) -> str:
    return (
        f"its features are not finite: the samples reach {float(np.abs(audio).max()):.3g}, too loud for float32 "
        "power spectra (audio should lie within [-1, 1])"
    )


def features_from_file(path: str | Path, config: FeatureConfig) -> np.ndarray:
    """Read an audio file (checked against the config's rate and channel count) and compute features."""
    audio = read_audio(path, config.sample_rate, config.in_channels, config.min_samples)
    try:
        return compute_features(audio, config)
    except SeldEdgeError as err:
        raise SeldEdgeError(f"{path}: {err}") from None


class FileFeatures:
    """The features of an audio file, computed on demand for any range of frames: equal to
    :func:`features_from_file`, in memory that does not grow with the file's length.

    The offline runtime reads long recordings this way (``seld-edge run`` on a 2-hour file would
    otherwise hold gigabytes of audio and features). Frames are computed in the same blocks of
    FRAMES_PER_BLOCK as :func:`compute_features`, from the same samples with the same reflect padding at
    both ends, so every value is equal, not merely close. The dB step's top_db floor is relative to each
    spectral channel's maximum over the whole file, which no block knows; a first pass over the file
    finds those maxima (and refuses non-finite features before any inference), the second computes
    frames as they are asked for. Costs: features twice, and the file read twice.
    """

    FRAMES_PER_READ = 16 * FRAMES_PER_BLOCK
    """Frames computed per read of the file (about 20 s at a 20 ms hop); the latest read is kept."""

    def __init__(self, path: str | Path, config: FeatureConfig) -> None:
        self.path = Path(path)
        self.config = config
        self.n_samples = check_audio_file(self.path, config.sample_rate, config.in_channels, config.min_samples)
        self.n_frames = config.n_frames(self.n_samples)
        self._kept: tuple[int, np.ndarray] | None = None  # (first frame, log features) of the latest read
        maximum = np.full((config.in_channels, 1, 1), -np.inf, np.float32)
        with self._open() as audio:
            for first in range(0, self.n_frames, self.FRAMES_PER_READ):
                linear = self._linear(audio, first)
                maximum = np.maximum(maximum, decibels(linear[: config.in_channels]).max(axis=(-2, -1), keepdims=True))
        self._floor = None if config.top_db is None else db_floor(maximum, config.top_db)

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Features (C_out, stop - start, F) of frames start .. stop - 1; frames past the end are zeros
        (the padding windowed inference gives a clip's last window)."""
        config = self.config
        out = np.zeros((config.out_channels, stop - start, config.n_bins), np.float32)
        if start >= self.n_frames:
            return out
        first = start - start % self.FRAMES_PER_READ
        with self._open() as audio:
            for read in range(first, min(stop, self.n_frames), self.FRAMES_PER_READ):
                if self._kept is None or self._kept[0] != read:
                    self._kept = (read, self._log(self._linear(audio, read)))
                features = self._kept[1]
                low, high = max(start, read), min(stop, read + features.shape[1])
                out[:, low - start : high - start] = features[:, low - read : high - read]
        return out

    def _open(self) -> sf.SoundFile:
        try:
            return sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            raise SeldEdgeError(f"{self.path}: not readable audio ({err})") from None

    def _linear(self, audio: sf.SoundFile, first: int) -> np.ndarray:
        """Linear features (before the dB step) of frames first .. first + FRAMES_PER_READ - 1, in the blocks
        of :func:`compute_features`."""
        config = self.config
        count = min(self.FRAMES_PER_READ, self.n_frames - first)
        padded = self._padded_samples(
            audio, first * config.hop_length, (first + count - 1) * config.hop_length + config.n_fft
        )
        frames = sliding_window_view(padded, config.n_fft, axis=-1)[:, :: config.hop_length]
        linear = np.empty((config.out_channels, count, config.n_bins), np.float32)
        window = window_for(config)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused below, in one line
            for start in range(0, count, FRAMES_PER_BLOCK):
                block = slice(start, start + FRAMES_PER_BLOCK)
                linear[:, block] = linear_features(frame_spectra(frames[:, block], window), config)
        if not np.isfinite(linear).all():
            raise SeldEdgeError(f"{self.path}: {_not_finite(padded)}")
        return linear

    def _log(self, linear: np.ndarray) -> np.ndarray:
        """The dB step of compute_features, with the whole file's floor."""
        spectral = decibels(linear[: self.config.in_channels])
        linear[: self.config.in_channels] = spectral if self._floor is None else np.maximum(spectral, self._floor)
        return linear

    def _padded_samples(self, audio: sf.SoundFile, start: int, stop: int) -> np.ndarray:
        """Samples start .. stop - 1 of the reflect-padded signal (n_fft // 2 at each end, as centred_frames),
        read from the file: (channels, stop - start) float32."""
        pad, n = self.config.n_fft // 2, self.n_samples
        index = np.arange(start - pad, stop - pad)
        index = np.where(index < 0, -index, index)  # one reflection suffices: n > n_fft // 2 (min_samples)
        index = np.where(index >= n, 2 * (n - 1) - index, index)
        low, high = int(index.min()), int(index.max()) + 1
        try:
            audio.seek(low)
            samples = audio.read(high - low, dtype="float32", always_2d=True).T
        except (sf.LibsndfileError, RuntimeError) as err:
            raise SeldEdgeError(f"{self.path}: not readable audio ({err})") from None
        if samples.shape[1] < high - low:
            raise SeldEdgeError(f"{self.path}: truncated ({low + samples.shape[1]} of {n} samples readable)")
        if not np.isfinite(samples).all():
            raise SeldEdgeError(f"{self.path}: contains NaN or infinite samples")
        return samples[:, index - low]

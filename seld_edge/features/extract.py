"""Audio -> feature tensor for any :class:`FeatureConfig` (numpy, torch-free)."""

from functools import lru_cache
from pathlib import Path

import numpy as np

from seld_edge.audio import read_audio
from seld_edge.errors import SeldEdgeError
from seld_edge.features.config import FeatureConfig
from seld_edge.features.functional import (
    hann_window,
    intensity_vector,
    mel_filterbank,
    power_spectrum,
    power_to_db,
    stft,
)


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
    spec = stft(audio, config.n_fft, config.hop_length, window_for(config), config.n_frames(audio.shape[-1]))
    power = power_spectrum(spec)
    if config.iv_norm:
        linear = np.concatenate([power, intensity_vector(spec, config.iv_norm, power)])
    else:
        linear = power
    fb = filterbank_for(config)
    projected = linear if fb is None else linear @ fb
    projected[: config.in_channels] = power_to_db(projected[: config.in_channels], config.top_db)
    return np.ascontiguousarray(projected, dtype=np.float32)


def features_from_file(path: str | Path, config: FeatureConfig) -> np.ndarray:
    """Read an audio file (checked against the config's rate and channel count) and compute features."""
    audio = read_audio(path, config.sample_rate, config.in_channels)
    if audio.shape[1] <= config.n_fft // 2:
        raise SeldEdgeError(f"{path}: {audio.shape[1]} samples is too short for {config.kind} (n_fft {config.n_fft})")
    return compute_features(audio, config)

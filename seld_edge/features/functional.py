"""Pure numpy feature functions: the definition every other implementation is tested against.

Conventions follow librosa's defaults where the DCASE baselines used librosa (periodic Hann window
centred in n_fft, centred frames with reflect padding, Slaney mel scale and area normalisation,
power_to_db with ref 1). Everything is float32 so 60 s of 4-channel audio takes a few tens of
milliseconds on one core.
"""

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

IV_EPS = 1e-8
AMIN = 1e-10

_SLANEY_F_SP = 200.0 / 3  # Hz per mel below 1 kHz
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
_SLANEY_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale (librosa htk=False): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_part = _SLANEY_MIN_LOG_MEL + np.log(np.maximum(hz, _SLANEY_MIN_LOG_HZ) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    return np.where(hz >= _SLANEY_MIN_LOG_HZ, log_part, hz / _SLANEY_F_SP)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    log_part = _SLANEY_MIN_LOG_HZ * np.exp(
        _SLANEY_LOGSTEP * (np.maximum(mel, _SLANEY_MIN_LOG_MEL) - _SLANEY_MIN_LOG_MEL)
    )
    return np.where(mel >= _SLANEY_MIN_LOG_MEL, log_part, mel * _SLANEY_F_SP)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Slaney-normalised triangular mel filters as an (n_fft // 2 + 1, n_mels) float32 matrix.

    Equal to ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax).T`` (its defaults), transposed so
    that features are one matrix product ``power @ filterbank``.
    """
    fmax = sample_rate / 2.0 if fmax is None else fmax
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges_hz)
    offsets = edges_hz[:, None] - fft_hz[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return np.ascontiguousarray(weights.T, dtype=np.float32)


def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window of win_length, zero-padded to n_fft with the window centred."""
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)).astype(np.float32)
    left = (n_fft - win_length) // 2
    return np.pad(window, (left, n_fft - win_length - left))


def centred_frames(audio: np.ndarray, n_fft: int, hop_length: int, n_frames: int | None = None) -> np.ndarray:
    """Frames (C, T, n_fft) of the reflect-padded signal, as a strided view (no copy).

    T is 1 + N // hop (centred frames, as librosa and torch.stft with center=True), or the first
    n_frames of those.
    """
    pad = n_fft // 2
    if audio.shape[-1] <= pad:
        raise ValueError(f"audio of {audio.shape[-1]} samples is too short for n_fft {n_fft}")
    padded = np.pad(audio.astype(np.float32, copy=False), ((0, 0), (pad, pad)), mode="reflect")
    return sliding_window_view(padded, n_fft, axis=-1)[:, ::hop_length][:, :n_frames]


def frame_spectra(frames: np.ndarray, window: np.ndarray) -> np.ndarray:
    """rfft of windowed frames (..., n_fft) -> (..., n_fft // 2 + 1) complex64.

    scipy's FFT transforms float32 in single precision, about three times faster than numpy's here.
    """
    return scipy.fft.rfft(frames * window, axis=-1, overwrite_x=True)


def stft(audio: np.ndarray, n_fft: int, hop_length: int, window: np.ndarray, n_frames: int | None = None) -> np.ndarray:
    """Centred STFT with reflect padding: (C, N) float32 -> (C, T, n_fft // 2 + 1) complex64."""
    return frame_spectra(centred_frames(audio, n_fft, hop_length, n_frames), window)


def power_to_db(power: np.ndarray, top_db: float | None = 80.0) -> np.ndarray:
    """10 log10(max(power, 1e-10)) with ref 1, then clipped to top_db below the maximum.

    The maximum is taken per leading index (per channel) over the last two axes, as the DCASE
    baseline calls librosa.power_to_db once per channel and file.
    """
    db = decibels(power)
    if top_db is not None:
        db = np.maximum(db, db_floor(db.max(axis=(-2, -1), keepdims=True), top_db))
    return db


def decibels(power: np.ndarray) -> np.ndarray:
    """10 log10(max(power, 1e-10)), elementwise in the input's precision: power_to_db before its floor."""
    return 10.0 * np.log10(np.maximum(power, np.float32(AMIN)))


def db_floor(maximum: np.ndarray, top_db: float) -> np.ndarray:
    """The floor power_to_db clips to: top_db below the maximum (of :func:`decibels`), in its precision."""
    return maximum - np.float32(top_db)


def power_spectrum(spec: np.ndarray) -> np.ndarray:
    """|S|^2 of complex spectra, in the spectra's real precision."""
    return spec.real**2 + spec.imag**2


def intensity_vector(spec: np.ndarray, norm: str, power: np.ndarray | None = None) -> np.ndarray:
    """Active intensity Re(conj(W) [X, Y, Z]) of ACN FOA spectra (W, Y, Z, X), normalised per bin.

    norm "energy": divided by eps + |W|^2 + (|X|^2 + |Y|^2 + |Z|^2) / 3 (DCASE baseline);
    norm "l2": divided by eps + the vector's own L2 norm (EINV2, GLFER-Net). Returns (3, T, F).
    ``power`` is :func:`power_spectrum` of spec when the caller already has it.
    """
    w = spec[0]
    iv = np.stack([w.real * spec[c].real + w.imag * spec[c].imag for c in (3, 1, 2)])
    if norm == "energy":
        power = power_spectrum(spec) if power is None else power
        denominator = IV_EPS + power[0] + (power[1] + power[2] + power[3]) / 3.0
    elif norm == "l2":
        denominator = IV_EPS + np.sqrt((iv**2).sum(axis=0))
    else:
        raise ValueError(f"unknown intensity-vector norm {norm!r}")
    return (iv / denominator).astype(np.float32, copy=False)

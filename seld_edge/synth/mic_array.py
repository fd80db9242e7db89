"""The MIC format: four omnidirectional capsules on a rigid sphere, the tetrahedral array of the DCASE
SELD data sets (TAU-NIGENS, STARSS22/23), as pure numpy functions, and its rendering of moving sources.

Geometry (the DCASE task 3 descriptions): capsules at (azimuth, elevation) = (45, 35), (-45, -35),
(135, -35), (-135, 35) degrees on a rigid sphere of radius a = 4.2 cm. The published 35 degrees is
used as given (a regular tetrahedron would have 35.26), so the exact symmetries are the three
half-turns about the x, y and z axes and the mirrors in the planes x = y and x = -y.

Response: the pressure on the surface of a rigid sphere in a unit plane wave (the classical scattering
solution, as the task descriptions write it):

    H_m(f, u) = 1 / (ka)^2 * sum_{n=0}^{N} i^(n-1) / h_n'(ka) * (2n + 1) * P_n(cos gamma_m)

with k = 2 pi f / c, gamma_m the angle between the source direction u and capsule m, P_n the Legendre
polynomials and h_n' the derivative of the spherical Hankel function of the *second* kind,
h_n = j_n - i y_n. The kind fixes the sign convention: with the second kind the formula is the
response for numpy's inverse FFT (x(t) = sum X(f) e^(+2 pi i f t)), unit gain at DC and a phase lead
on the capsule facing the source, as physics asks (tests/test_mic_array.py checks both). The first
kind, h_n = j_n + i y_n, in the same formula gives -1 at DC; it belongs to the physicists' e^(-i w t)
convention, where the response is the complex conjugate, (-i)^(n-1) / h_n'(ka) with the first kind.

We write the series as H = sum_n (2n + 1) b_n(ka) P_n(cos gamma) with the modal weights
b_n = i^(n-1) / ((ka)^2 h_n'(ka)). Truncation: N = 30, the order the DCASE descriptions use. At our
highest frequency (12 kHz, ka = 9.2) the terms fall off factorially once n > ka; the sum to 30
differs from the sum to 60 by under 1e-12, to 25 by 4e-9, to 20 by 1e-5 (30 terms hold 1e-6 up to
20 kHz, ka = 15; at 24 kHz, for 48 kHz audio, 1e-4). DC (ka = 0, where 1/(ka)^2
and 1/h_n' are 0 * infinity) takes its limit: b_0 = 1, b_n = 0 for n >= 1, an omnidirectional
capsule with unit gain. At low ka the series gives a phase lead of 1.5 ka cos(gamma): the rigid sphere
makes inter-capsule delays 1.5 times the free-field ones.

Each propagation path (direct sound, first-order reflections) reaches the array as a plane wave: the
sources are 1 m or more away, 24 radii, so the wavefront bends by under 1 mm across the sphere.
Moving sources (:func:`encode_mic`): the direction is taken once per block of BLOCK_HOP samples
(10.7 ms at 24 kHz; a source at 60 deg/s turns 0.64 degrees per block), each Hann-windowed block of
2 * BLOCK_HOP samples (the windows sum to one) is filtered with the array's response for the block's
centre direction, and the blocks are overlap-added, so the filter cross-fades smoothly along the path.
The filters are FIRs designed once (window method: the exact response on a dense grid, its impulse
response cut to +-FILTER_HALF_LENGTH samples by a Hann window) on a grid of TABLE_POINTS values of
cos(gamma) and linearly interpolated between them. A fractional delay has sinc tails, so a finite FIR
cannot match the response exactly: with 192 taps each side the designed response is within 2e-3 of
the series below 11.5 kHz and 4e-3 below 11.8 kHz; only the last 200 Hz below Nyquist deviate more
(the Nyquist bin of a real filter must be real, the response there is not). A static source rendered
this way differs from the exact response by -64 dB or less below 11.5 kHz (tests/test_mic_array.py).
"""

from functools import lru_cache

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import eval_legendre, spherical_jn, spherical_yn

from seld_edge.geometry import polar_to_unit
from seld_edge.synth.spatial import SPEED_OF_SOUND

CAPSULE_DIRECTIONS_DEG = ((45.0, 35.0), (-45.0, -35.0), (135.0, -35.0), (-135.0, 35.0))
ARRAY_RADIUS_M = 0.042
SERIES_ORDER = 30

BLOCK_HOP = 256  # samples between direction updates; blocks are 2 * BLOCK_HOP long
FILTER_HALF_LENGTH = 192  # FIR taps on each side of t = 0 (8 ms at 24 kHz)
BLOCK_FFT = 1024  # >= 2 * BLOCK_HOP + 2 * FILTER_HALF_LENGTH, so each block's convolution is linear
TABLE_POINTS = 2001  # grid of cos(gamma) in [-1, 1] for the filter table
DESIGN_FFT = 4096  # dense grid of the window-method design
DIFFUSE_GRID_POINTS = 4097  # frequencies 0 .. fs/2 on which the diffuse-field mixing is computed

_I_POWERS = np.array([1.0, 1.0j, -1.0, -1.0j])  # i^0 .. i^3, exact


def capsule_directions() -> np.ndarray:
    """Unit vectors (4, 3) of the capsules, in the channel order of the MIC format."""
    return polar_to_unit(*np.array(CAPSULE_DIRECTIONS_DEG).T)


def wavenumber_radius(frequencies: np.ndarray, radius: float = ARRAY_RADIUS_M) -> np.ndarray:
    """ka for frequencies in Hz."""
    return 2.0 * np.pi * np.asarray(frequencies, dtype=np.float64) * radius / SPEED_OF_SOUND


def modal_weights(ka: np.ndarray, order: int = SERIES_ORDER) -> np.ndarray:
    """(order + 1, *ka.shape) complex128: b_n(ka) = i^(n-1) / ((ka)^2 h_n'(ka)), h_n of the second kind.

    ka = 0 takes the limit (b_0 = 1, b_n = 0 above); where h_n' overflows (tiny ka, high n) b_n is 0.
    """
    ka = np.asarray(ka, dtype=np.float64)
    n = np.arange(order + 1).reshape((-1,) + (1,) * ka.ndim)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        hankel_derivative = spherical_jn(n, ka, derivative=True) - 1j * spherical_yn(n, ka, derivative=True)
        weights = _I_POWERS[(n - 1) % 4] / (ka**2 * hankel_derivative)
    weights = np.where(np.isfinite(weights), weights, 0.0)
    weights[0] = np.where(ka == 0.0, 1.0, weights[0])
    return weights


def sphere_response(cos_gamma: np.ndarray, ka: np.ndarray, order: int = SERIES_ORDER) -> np.ndarray:
    """(*cos_gamma.shape, *ka.shape) complex128: pressure on the sphere at angle gamma from a unit plane wave."""
    cos_gamma = np.asarray(cos_gamma, dtype=np.float64)
    n = np.arange(order + 1).reshape((-1,) + (1,) * cos_gamma.ndim)
    angular = (2 * n + 1) * eval_legendre(n, np.clip(cos_gamma, -1.0, 1.0))
    return np.tensordot(np.moveaxis(angular, 0, -1), modal_weights(ka, order), axes=1)


def array_response(
    frequencies: np.ndarray,
    directions: np.ndarray,
    capsules: np.ndarray | None = None,
    radius: float = ARRAY_RADIUS_M,
    order: int = SERIES_ORDER,
) -> np.ndarray:
    """(D, M, F) complex128: H_m(f, u) of M capsules (default: the tetrahedron) for D unit directions (D, 3)."""
    capsules = capsule_directions() if capsules is None else capsules
    cosines = np.atleast_2d(directions) @ capsules.T
    return sphere_response(cosines, wavenumber_radius(frequencies, radius), order)


def diffuse_covariance(
    frequencies: np.ndarray, capsules: np.ndarray | None = None, first_order: int = 0, order: int = SERIES_ORDER
) -> np.ndarray:
    """(F, M, M) real: E[p_m conj(p_m')] in an isotropic field of unit power, from order first_order up.

    Averaging H_m conj(H_m') over all directions leaves sum_n (2n + 1) |b_n|^2 P_n(a_m . a_m') (the
    addition theorem: the mean of P_n(u . a) P_l(u . a') over the sphere is delta_nl P_n(a . a') / (2n + 1)).
    """
    capsules = capsule_directions() if capsules is None else capsules
    weights = modal_weights(wavenumber_radius(frequencies), order)[first_order:]
    n = np.arange(first_order, order + 1)[:, None, None]
    angular = (2 * n + 1) * eval_legendre(n, np.clip(capsules @ capsules.T, -1.0, 1.0))
    return np.tensordot(np.abs(weights.T) ** 2, angular, axes=1)


def diffuse_mic(foa: np.ndarray, higher_orders: np.ndarray, sample_rate: int) -> np.ndarray:
    """(4, n) MIC recording of the isotropic field whose FOA (W, Y, Z, X; SN3D) is ``foa``.

    A field's orders 0 and 1 are exactly what FOA holds, and the capsules hear them through b_0 and b_1:
    p_m = b_0 W + 3 b_1 a_m . (X, Y, Z) + (orders >= 2). In an isotropic field the orders are
    uncorrelated, so the orders >= 2 come from ``higher_orders`` (4, n): independent noises with the
    power spectrum of W, mixed by the square root of their covariance sum_{n>=2} (2n + 1) |b_n|^2
    P_n(a_m . a_m'). The MIC background is then the FOA background itself, seen by the other array.
    The mixing is computed on DIFFUSE_GRID_POINTS frequencies and interpolated (it is smooth in f).
    """
    n_samples = foa.shape[1]
    grid = np.linspace(0.0, sample_rate / 2.0, DIFFUSE_GRID_POINTS)
    freqs = np.fft.rfftfreq(n_samples, 1.0 / sample_rate)
    low = modal_weights(wavenumber_radius(grid), 1)
    b0, b1 = (np.interp(freqs, grid, w.real) + 1j * np.interp(freqs, grid, w.imag) for w in low)
    eigenvalues, eigenvectors = np.linalg.eigh(diffuse_covariance(grid, first_order=2))
    root = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))[:, None, :]) @ eigenvectors.transpose(0, 2, 1)
    spectra = np.fft.rfft(foa, axis=1)
    capsules = capsule_directions()
    mic = b0 * spectra[0] + 3.0 * b1 * (capsules @ spectra[[3, 1, 2]])
    extra = np.fft.rfft(higher_orders, axis=1)
    for m in range(4):
        for j in range(4):
            mic[m] += np.interp(freqs, grid, root[:, m, j]) * extra[j]
    return np.fft.irfft(mic, n=n_samples, axis=1)


@lru_cache(maxsize=4)
def filter_table(sample_rate: int) -> np.ndarray:
    """(TABLE_POINTS, BLOCK_FFT // 2 + 1) complex64: spectra of the designed FIRs for cos(gamma) on a
    uniform grid over [-1, 1], delayed by FILTER_HALF_LENGTH so that every tap is causal. Cached."""
    cosines = np.linspace(-1.0, 1.0, TABLE_POINTS)
    design = sphere_response(cosines, wavenumber_radius(np.fft.rfftfreq(DESIGN_FFT, 1.0 / sample_rate)))
    impulse = np.fft.irfft(design, n=DESIGN_FFT, axis=-1)
    taps = np.arange(-FILTER_HALF_LENGTH, FILTER_HALF_LENGTH + 1)
    window = 0.5 + 0.5 * np.cos(np.pi * taps / (FILTER_HALF_LENGTH + 1))
    fir = impulse[:, taps] * window  # negative taps wrap to the end of the periodic response
    table = np.fft.rfft(fir, n=BLOCK_FFT, axis=-1).astype(np.complex64)
    table.setflags(write=False)
    return table


@lru_cache(maxsize=4)
def _table_with_slopes(sample_rate: int) -> np.ndarray:
    """(TABLE_POINTS - 1, 2, F): each grid point's spectrum and the step to the next, gathered together."""
    table = filter_table(sample_rate)
    return np.ascontiguousarray(np.stack([table[:-1], table[1:] - table[:-1]], axis=1))


def encode_mic(signal: np.ndarray, directions: np.ndarray, sample_rate: int) -> np.ndarray:
    """MIC of a plane wave ``signal`` (n,) arriving from unit ``directions`` (n, 3), one per sample.

    Returns (4, n + 2 * FILTER_HALF_LENGTH) float32: column j is time j - FILTER_HALF_LENGTH of the
    input, so the capsules that hear the wave before the array centre keep their lead.
    """
    hop, n = BLOCK_HOP, len(signal)
    table = _table_with_slopes(sample_rate)
    n_blocks = (n - 1) // hop + 2  # block k spans samples [k hop - hop, k hop + hop), centred on k hop
    padded = np.zeros((n_blocks + 1) * hop, dtype=np.float32)
    padded[hop : hop + n] = signal
    window = (0.5 - 0.5 * np.cos(np.pi * np.arange(2 * hop) / hop)).astype(np.float32)  # periodic Hann
    blocks = sliding_window_view(padded, 2 * hop)[::hop] * window
    spectra = scipy.fft.rfft(blocks, n=BLOCK_FFT, axis=-1)

    centres = directions[np.minimum(np.arange(n_blocks) * hop, n - 1)]
    position = (capsule_directions() @ centres.T + 1.0) * ((TABLE_POINTS - 1) / 2.0)  # (4, blocks)
    below = np.clip(np.floor(position).astype(np.int64), 0, TABLE_POINTS - 2)
    nearby = table[below]  # (4, blocks, 2, F)
    response = nearby[:, :, 1] * (position - below).astype(np.float32)[..., None]  # linear interpolation
    response += nearby[:, :, 0]
    response *= spectra
    filtered = scipy.fft.irfft(response, n=BLOCK_FFT, axis=-1, overwrite_x=True)  # (4, blocks, BLOCK_FFT)

    # Overlap-add: block k's output starts at k hop; BLOCK_FFT is a whole number of hops.
    out = np.zeros((4, (n_blocks - 1) * hop + BLOCK_FFT), dtype=np.float32)
    for part in range(BLOCK_FFT // hop):
        out[:, part * hop : (part + n_blocks) * hop] += filtered[:, :, part * hop : (part + 1) * hop].reshape(4, -1)
    # out column o is time o - hop - FILTER_HALF_LENGTH of the input
    return out[:, hop : hop + n + 2 * FILTER_HALF_LENGTH]

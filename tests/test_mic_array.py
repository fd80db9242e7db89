"""The MIC format against physics: the rigid-sphere response (a textbook derivation, its low-frequency
limits, shadowing, symmetries, convergence) and the rendering of static, moving and diffuse sound."""

import numpy as np
import pytest
from numpy.polynomial import legendre
from scipy import signal, special

from seld_edge.geometry import angular_distance_deg, polar_to_unit
from seld_edge.synth import SAMPLE_RATE, SceneEvent, label_events, render_scene_formats, sample_room
from seld_edge.synth.mic_array import (
    ARRAY_RADIUS_M,
    BLOCK_FFT,
    FILTER_HALF_LENGTH,
    array_response,
    capsule_directions,
    diffuse_covariance,
    diffuse_mic,
    encode_mic,
    filter_table,
    modal_weights,
    sphere_response,
    wavenumber_radius,
)
from seld_edge.synth.spatial import SPEED_OF_SOUND, diffuse_noise, pink_noise

A_OVER_C = ARRAY_RADIUS_M / SPEED_OF_SOUND  # 122 microseconds


def random_directions(count: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((count, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fibonacci_directions(count: int) -> np.ndarray:
    """Nearly uniform points on the sphere (equal-area spiral)."""
    z = 1.0 - (2.0 * np.arange(count) + 1.0) / count
    phi = np.pi * (3.0 - np.sqrt(5.0)) * np.arange(count)
    r = np.sqrt(1.0 - z**2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def textbook_pressure(cos_gamma: np.ndarray, ka: np.ndarray, order: int = 60) -> np.ndarray:
    """Incident plus scattered wave on a rigid sphere, written from first principles (not the module's form).

    In numpy's convention (x(t) = sum X(f) e^(+i w t)) a plane wave arriving from u reaches a point r
    earlier by u.r / c, so the incident field is e^(+i k u.r) = sum_n i^n (2n+1) j_n(kr) P_n(cos gamma)
    (Rayleigh), and the scattered wave must be outgoing, e^(-i k r) / r, i.e. h_n = j_n - i y_n.
    A rigid surface has zero normal velocity: d/dr [j_n + s_n h_n](kr) = 0 at r = a, so
    s_n = -j_n'(ka) / h_n'(ka). (The module folds the bracket with the Wronskian; this does not.)
    """
    n = np.arange(order + 1)[:, None]
    x = ka[None, :]
    jn, djn = special.spherical_jn(n, x), special.spherical_jn(n, x, derivative=True)
    hn = jn - 1j * special.spherical_yn(n, x)
    dhn = djn - 1j * special.spherical_yn(n, x, derivative=True)
    radial = (1j**n) * (2 * n + 1) * (jn - djn / dhn * hn)  # (order + 1, F)
    legendre_values = np.stack([legendre.legval(cos_gamma, np.eye(order + 1)[k]) for k in range(order + 1)])
    return np.einsum("ng,nf->gf", legendre_values, radial)


def group_delay(response: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Least-squares slope of the unwrapped phase against angular frequency (s); positive = leads."""
    phase = np.unwrap(np.angle(response), axis=-1)
    omega = 2.0 * np.pi * freqs
    return np.polyfit(omega, np.moveaxis(phase, -1, 0).reshape(len(freqs), -1), 1)[0].reshape(phase.shape[:-1])


def test_capsules_are_the_dcase_tetrahedron():
    capsules = capsule_directions()
    expected = polar_to_unit([45.0, -45.0, 135.0, -135.0], [35.0, -35.0, -35.0, 35.0])
    np.testing.assert_allclose(capsules, expected, atol=1e-12)
    angles = np.degrees(np.arccos(np.clip(capsules @ capsules.T, -1, 1)))[np.triu_indices(4, 1)]
    print(f"angles between capsules: {np.round(angles, 2)} deg (regular tetrahedron: 109.47)")
    assert np.all(np.abs(angles - 109.47) < 1.0)


def test_series_equals_the_textbook_scattering_solution():
    freqs = np.geomspace(20.0, 12000.0, 60)
    cosines = np.linspace(-1.0, 1.0, 41)
    ours = sphere_response(cosines, wavenumber_radius(freqs))
    reference = textbook_pressure(cosines, wavenumber_radius(freqs))
    error = np.abs(ours - reference).max()
    print(f"series vs textbook incident + scattered: max abs error {error:.1e}")
    assert error < 1e-9
    # The incident part alone is the plane wave itself: the expansion's convention is e^(+i k u.r).
    x = wavenumber_radius(freqs)[None, :]
    n = np.arange(61)[:, None]
    rayleigh = np.stack([legendre.legval(cosines, np.eye(61)[k]) for k in range(61)]).T @ (
        (1j**n) * (2 * n + 1) * special.spherical_jn(n, x)
    )
    np.testing.assert_allclose(rayleigh, np.exp(1j * cosines[:, None] * x), atol=1e-10)


def test_dc_and_low_frequency_are_omnidirectional_with_unit_gain():
    directions = random_directions(200)
    at_dc = array_response(np.array([0.0]), directions)
    assert np.array_equal(at_dc, np.ones_like(at_dc)), "ka = 0 takes the limit, no 0 * inf"
    at_50 = array_response(np.array([50.0]), directions)
    gain_error = np.abs(np.abs(at_50) - 1.0).max()
    print(f"50 Hz: max | |H| - 1 | over 200 directions x 4 capsules = {gain_error:.1e}")
    assert gain_error < 1e-3
    ka = wavenumber_radius(np.array([50.0]))[0]
    assert np.abs(np.angle(at_50)).max() <= 1.5 * ka * 1.01  # phase only from the tiny delays


def test_low_frequency_delays_are_one_and_a_half_times_free_field():
    """For ka << 1 the n = 1 term of the textbook series is (3/2) i ka cos(gamma) against i ka cos(gamma)
    for the free field (j_1 ~ x/3, j_1' ~ 1/3, h_1 ~ i/x^2, h_1' ~ -2i/x^3: the bracket is x/3 + x/6),
    so the phase lead of a capsule, and every inter-capsule delay, is 1.5 times the free-field one."""
    freqs = np.linspace(50.0, 150.0, 21)
    directions = random_directions(50, seed=1)
    delays = group_delay(array_response(freqs, directions), freqs)  # (D, 4) leads
    free_field = A_OVER_C * (directions @ capsule_directions().T)  # a cos(gamma) / c
    pairs = np.triu_indices(4, 1)
    rigid = (delays[:, :, None] - delays[:, None, :])[:, pairs[0], pairs[1]]
    free = (free_field[:, :, None] - free_field[:, None, :])[:, pairs[0], pairs[1]]
    ratio = rigid[np.abs(free) > 0.2 * A_OVER_C] / free[np.abs(free) > 0.2 * A_OVER_C]
    print(f"50-150 Hz inter-capsule delay / free-field delay: {ratio.min():.4f} .. {ratio.max():.4f}")
    assert np.all(np.abs(ratio - 1.5) < 0.015)
    facing = group_delay(array_response(freqs, capsule_directions()[:1]), freqs)[0] * 1e6
    ahead = facing[0] - facing[1:].mean()
    print(f"source towards capsule 1: leads of capsules 1-4 {np.round(facing, 1)} us")
    print(f"capsule 1 ahead of the others by {ahead:.1f} us (free field {A_OVER_C * 4 / 3 * 1e6:.1f} us)")


def test_rendered_noise_has_the_formula_delays():
    """Broadband noise through encode_mic: the cross-spectral phase slopes over 50-400 Hz between capsules
    are the response's (a rigid sphere's delay factor is 1.5 to 1.6 there)."""
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(2 * SAMPLE_RATE)
    band = np.linspace(50.0, 400.0, 36)
    for direction in (polar_to_unit(30.0, 10.0), polar_to_unit(-120.0, -40.0), capsule_directions()[2]):
        mic = encode_mic(noise, np.tile(direction, (len(noise), 1)), SAMPLE_RATE)
        freqs, cross = signal.csd(mic[0], mic[1:], SAMPLE_RATE, nperseg=8192)  # E[conj(X_0) X_m]
        on_band = [np.interp(band, freqs, c.real) + 1j * np.interp(band, freqs, c.imag) for c in cross]
        measured = group_delay(np.stack(on_band), band)
        model = array_response(band, direction)[0]
        expected = group_delay(model[1:] * np.conj(model[0]), band)
        error = np.abs(measured - expected).max()
        print(f"delays to capsule 1 (us): measured {np.round(measured * 1e6, 2)}, formula "
              f"{np.round(expected * 1e6, 2)}, max error {error * 1e6:.3f} us")  # fmt: skip
        assert error < 0.5e-6  # 1/80 of a sample at 24 kHz


def test_high_frequencies_favour_the_facing_capsule():
    freqs = np.linspace(4000.0, 11000.0, 71)
    capsules = capsule_directions()
    level = 10 * np.log10(np.mean(np.abs(array_response(freqs, capsules)) ** 2, axis=-1))  # (source, capsule)
    print(f"4-11 kHz level (dB) by capsule, source towards capsule 1..4:\n{np.round(level, 2)}")
    margin = np.diag(level) - np.max(np.where(np.eye(4, dtype=bool), -np.inf, level), axis=1)
    assert np.all(margin > 4.0), margin
    # Any direction: the capsule nearest the source is the loudest (where it is clearly nearest).
    directions = random_directions(300, seed=2)
    cosines = np.sort(directions @ capsules.T, axis=1)
    clear = cosines[:, -1] - cosines[:, -2] > 0.1
    loud = np.argmax(np.mean(np.abs(array_response(freqs, directions)) ** 2, axis=-1), axis=1)
    nearest = np.argmax(directions @ capsules.T, axis=1)
    assert clear.sum() > 150 and np.array_equal(loud[clear], nearest[clear])
    # At 50 Hz there is no shadow: all capsules within 0.01 dB.
    low = 20 * np.log10(np.abs(array_response(np.array([50.0]), directions)))
    assert np.ptp(low, axis=1).max() < 0.01


def test_response_has_the_array_symmetries():
    """Half-turns about x, y, z and mirrors in the planes x = y and x = -y map the capsules onto each
    other; a plane wave from the mapped direction gives the mapped capsules the same signals."""
    half_turns = [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0])]
    mirrors = [np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), np.diag([-1.0, -1.0, 1.0])]
    mirrors[1] = mirrors[1] @ mirrors[0]  # x = -y: (x, y, z) -> (-y, -x, z)
    capsules = capsule_directions()
    freqs = np.array([100.0, 1000.0, 5000.0, 11000.0])
    directions = random_directions(40, seed=3)
    original = array_response(freqs, directions)
    for transform in half_turns + mirrors:
        mapped = capsules @ transform.T
        permutation = np.argmax(mapped @ capsules.T, axis=1)  # capsule m goes to capsule permutation[m]
        np.testing.assert_allclose(capsules[permutation], mapped, atol=1e-12)
        assert sorted(permutation) == [0, 1, 2, 3] and not np.array_equal(permutation, np.arange(4))
        transformed = array_response(freqs, directions @ transform.T)
        np.testing.assert_allclose(transformed[:, permutation], original, atol=1e-12)


def test_series_has_converged():
    cosines = np.linspace(-1.0, 1.0, 81)
    ka = wavenumber_radius(np.linspace(0.0, SAMPLE_RATE / 2, 241))
    change = np.abs(sphere_response(cosines, ka, 30) - sphere_response(cosines, ka, 60)).max()
    short = np.abs(sphere_response(cosines, ka, 20) - sphere_response(cosines, ka, 60)).max()
    print(f"up to {SAMPLE_RATE // 2} Hz (ka {ka.max():.1f}): orders 31-60 change H by {change:.1e}")
    print(f"orders 21-60 change it by {short:.1e}")
    assert change < 1e-6 and short > change
    assert np.all(modal_weights(np.array([0.0]))[1:] == 0.0)


def test_designed_filters_match_the_response():
    table = filter_table(SAMPLE_RATE)
    freqs = np.fft.rfftfreq(BLOCK_FFT, 1.0 / SAMPLE_RATE)
    cosines = np.linspace(-1.0, 1.0, table.shape[0])[::50]
    delay = np.exp(-2j * np.pi * freqs * FILTER_HALF_LENGTH / SAMPLE_RATE)  # the table's taps are made causal
    error = np.abs(table[::50] - sphere_response(cosines, wavenumber_radius(freqs)) * delay)
    for top in (11500.0, 11800.0, 11900.0, 12000.0):
        print(f"FIR design error below {top:.0f} Hz: {error[:, freqs < top].max():.1e}")
    assert error[:, freqs < 11500.0].max() < 2.5e-3


def test_static_render_equals_the_exact_response():
    rng = np.random.default_rng(4)
    n = SAMPLE_RATE // 2
    sound = rng.standard_normal(n)
    direction = polar_to_unit(70.0, 25.0)
    mic = encode_mic(sound, np.tile(direction, (n, 1)), SAMPLE_RATE)
    assert mic.shape == (4, n + 2 * FILTER_HALF_LENGTH) and mic.dtype == np.float32
    size = 4 * n
    exact = np.fft.irfft(array_response(np.fft.rfftfreq(size, 1.0 / SAMPLE_RATE), direction)[0]
                         * np.fft.rfft(sound, size), size)  # fmt: skip
    exact = np.roll(exact, FILTER_HALF_LENGTH, axis=1)[:, : mic.shape[1]]  # column j is time j - half length
    freqs = np.fft.rfftfreq(mic.shape[1], 1.0 / SAMPLE_RATE)
    below = freqs < 11500.0
    residual = np.abs(np.fft.rfft(mic - exact)[:, below]) ** 2
    error_db = 10 * np.log10(residual.sum(axis=1) / (np.abs(np.fft.rfft(exact)[:, below]) ** 2).sum(axis=1))
    print(f"static render vs exact response below 11.5 kHz: {np.round(error_db, 1)} dB")
    assert np.all(error_db < -55.0)


STFT_SIZE = 512
DOA_BAND = (500.0, 10000.0)


def steering_vectors(candidates: np.ndarray) -> np.ndarray:
    """Unit-norm array responses (D, 4, F) of candidate directions on the STFT's bins in DOA_BAND."""
    freqs = np.fft.rfftfreq(STFT_SIZE, 1.0 / SAMPLE_RATE)
    steering = array_response(freqs[(freqs > DOA_BAND[0]) & (freqs < DOA_BAND[1])], candidates)
    return steering / np.linalg.norm(steering, axis=1, keepdims=True)


def steered_direction(mic: np.ndarray, candidates: np.ndarray, steering: np.ndarray) -> np.ndarray:
    """The candidate whose array response best explains the recording (single-source maximum likelihood)."""
    freqs, _, spec = signal.stft(mic, SAMPLE_RATE, nperseg=STFT_SIZE)
    band = spec[:, (freqs > DOA_BAND[0]) & (freqs < DOA_BAND[1])]
    covariance = np.einsum("mft,nft->fmn", band, band.conj())
    power = np.einsum("dmf,fmn,dnf->d", steering.conj(), covariance, steering).real
    return candidates[np.argmax(power)]


def test_moving_source_is_heard_where_labelled():
    event = SceneEvent(5, 0, 0.0, 3.0, 150.0, 40.0, 10.0, 2.0)  # a hum crossing the +-180 deg seam
    rng = np.random.default_rng(0)
    mic = render_scene_formats([event], 3.0, rng, sample_room(rng), ("mic",), reflections=False)["mic"]
    labels = label_events([event])
    azimuths, elevations = np.meshgrid(np.arange(-180.0, 180.0, 1.0), np.arange(-10.0, 31.0, 2.0))
    candidates = polar_to_unit(azimuths.ravel(), elevations.ravel())
    steering = steering_vectors(candidates)
    hop = SAMPLE_RATE // 10
    errors = []
    for frame in (2, 9, 16, 23):
        window = mic[:, frame * hop : (frame + 3) * hop]
        found = steered_direction(window, candidates, steering)
        errors.append(angular_distance_deg(found, labels[frame + 1].unit_vector()))
    print(f"moving source: direction error along the path {np.round(errors, 1)} deg")
    assert max(errors) < 3.0


def test_diffuse_covariance_is_the_average_over_directions():
    directions = fibonacci_directions(3000)
    freqs = np.array([100.0, 1000.0, 4000.0, 10000.0])
    response = array_response(freqs, directions)  # (D, 4, F)
    average = np.einsum("dmf,dnf->fmn", response, response.conj()).real / len(directions)
    error = np.abs(diffuse_covariance(freqs) - average).max()
    print(f"diffuse covariance vs mean over 3000 directions: max abs error {error:.1e}")
    assert error < 1e-3


def test_mic_background_is_the_foa_background_seen_by_the_sphere():
    rng = np.random.default_rng(5)
    n = 8 * SAMPLE_RATE
    foa = diffuse_noise(n, rng, SAMPLE_RATE)
    mic = diffuse_mic(foa, pink_noise(4, n, rng, SAMPLE_RATE), SAMPLE_RATE)
    freqs, w_power = signal.welch(foa[0], SAMPLE_RATE, nperseg=1024)
    _, cross = signal.csd(mic[:, None], mic[None, :], SAMPLE_RATE, nperseg=1024)  # (4, 4, F), conj(X_m) X_n
    measured = cross.real / w_power
    expected = diffuse_covariance(freqs).transpose(1, 2, 0)
    bands = [(200.0, 600.0), (1500.0, 3000.0), (6000.0, 11000.0)]
    for lo, hi in bands:
        sel = (freqs >= lo) & (freqs < hi)
        power = np.diagonal(expected[:, :, sel].mean(-1)).mean()
        error = np.abs(measured[:, :, sel].mean(axis=-1) - expected[:, :, sel].mean(axis=-1)).max() / power
        print(f"{lo:.0f}-{hi:.0f} Hz: capsule power {power:.2f} x W's, cross {expected[0, 1, sel].mean():.2f}; "
              f"measured covariance off by {error:.1%} of the power")  # fmt: skip
        # Each pink noise is scaled to unit RMS, which its lowest bins dominate: the scale of each
        # channel's upper bands varies by a few percent between draws (W's and X, Y, Z's alike).
        assert error < 0.06
    # The field's first order is FOA's: E[p_m conj(X)] = b_1 a_m,x times W's power, p_m = W below 100 Hz.
    _, to_x = signal.csd(foa[3], mic, SAMPLE_RATE, nperseg=1024)  # E[conj(X) p_m]
    sel = (freqs >= 1000.0) & (freqs < 3000.0)
    b1 = modal_weights(wavenumber_radius(freqs[sel]), 1)[1]
    first_order = (to_x[:, sel] / w_power[sel]).mean(axis=1)
    model = b1.mean() * capsule_directions()[:, 0]
    print(f"1-3 kHz: E[p_m conj(X)] / W's power {np.round(first_order, 3)}, b_1 a_m,x {np.round(model, 3)}")
    assert np.abs(first_order - model).max() < 0.1 * np.abs(model).max()
    low = signal.sosfiltfilt(signal.butter(4, 100.0, fs=SAMPLE_RATE, output="sos"), np.vstack([foa[:1], mic]))
    correlation = np.corrcoef(low)[0, 1:]
    print(f"below 100 Hz: correlation of each capsule with W {np.round(correlation, 5)}")
    assert np.all(correlation > 0.999)


@pytest.mark.parametrize("seed", [0, 1])
def test_scene_formats_share_events_and_background(seed):
    """One scene in both formats: FOA as when rendered alone; MIC's low band is FOA's W (omni capsules)."""
    from seld_edge.synth import generate_scene, generate_scene_formats

    foa_alone, labels_alone = generate_scene(4.0, np.random.default_rng(seed))
    both, labels = generate_scene_formats(4.0, np.random.default_rng(seed), ("foa", "mic"))
    assert labels == labels_alone and np.array_equal(both["foa"], foa_alone)
    assert both["mic"].shape == foa_alone.shape and both["mic"].dtype == np.float32
    assert 0.05 < np.abs(both["mic"]).max() <= 0.99
    lowpass = signal.butter(4, 150.0, fs=SAMPLE_RATE, output="sos")
    low = signal.sosfiltfilt(lowpass, np.vstack([both["foa"][:1], both["mic"]]))
    gains = low[1:] @ low[0] / (low[0] @ low[0])
    correlation = np.corrcoef(low)[0, 1:]
    print(f"below 150 Hz: capsule / W gain {np.round(gains, 3)}, correlation {np.round(correlation, 4)}")
    assert np.all(correlation > 0.99)
    assert np.ptp(gains) < 0.02  # the same scale for every capsule (each format has its own peak gain)

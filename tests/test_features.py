"""The numpy front end: mel filter bank, STFT framing, shapes, intensity vectors, torch twin parity."""

import json

import numpy as np
import pytest

from seld_edge.errors import SeldEdgeError
from seld_edge.features import FEATURE_KINDS, FeatureConfig, compute_features, feature_config, feature_difference
from seld_edge.features.extract import compared_bins
from seld_edge.features.functional import hann_window, hz_to_mel, mel_filterbank, mel_to_hz, power_to_db, stft
from seld_edge.geometry import angular_distance_deg
from tests.conftest import plane_wave_foa


def slaney_filterbank_from_formula(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney's Auditory Toolbox mel filters written out filter by filter, bin by bin (float64).

    Mel scale: 3 mel per 200 Hz below 1 kHz, then 27 mel per factor 6.4 in frequency. Filter m is a
    triangle from edge m to edge m + 2 with peak at edge m + 1, scaled by 2 / (upper - lower) Hz so
    every filter has the same area.
    """

    def to_mel(f: float) -> float:
        return 3.0 * f / 200.0 if f < 1000.0 else 15.0 + 27.0 * np.log(f / 1000.0) / np.log(6.4)

    def to_hz(m: float) -> float:
        return 200.0 * m / 3.0 if m < 15.0 else 1000.0 * 6.4 ** ((m - 15.0) / 27.0)

    lo, hi = to_mel(fmin), to_mel(fmax)
    edges = [to_hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    bins = [k * sr / n_fft for k in range(n_fft // 2 + 1)]
    weights = np.zeros((len(bins), n_mels))
    for m in range(n_mels):
        lower, centre, upper = edges[m], edges[m + 1], edges[m + 2]
        for k, f in enumerate(bins):
            rise = (f - lower) / (centre - lower)
            fall = (upper - f) / (upper - centre)
            weights[k, m] = max(0.0, min(rise, fall)) * 2.0 / (upper - lower)
    return weights


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "fmin", "fmax"),
    [(24000, 1024, 64, 0.0, 12000.0), (24000, 1024, 128, 20.0, 12000.0), (24000, 512, 128, 0.0, 12000.0),
     (16000, 400, 40, 50.0, 7600.0)],
)  # fmt: skip
def test_mel_filterbank_equals_slaney_formula(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    reference = slaney_filterbank_from_formula(sr, n_fft, n_mels, fmin, fmax)
    assert ours.shape == (n_fft // 2 + 1, n_mels) and ours.dtype == np.float32
    error = np.abs(ours - reference).max()
    print(f"mel filterbank max abs error vs formula: {error:.2e}")
    assert error <= 1e-6
    assert (reference.max(axis=0) > 0).all(), "every filter covers at least one FFT bin"


def test_slaney_mel_scale_anchor_points():
    assert hz_to_mel(1000.0) == pytest.approx(15.0)
    assert hz_to_mel(200.0) == pytest.approx(3.0)
    assert hz_to_mel(6400.0) == pytest.approx(42.0)  # one factor of 6.4 above 1 kHz is 27 mel
    freqs = np.array([0.0, 300.0, 999.0, 1000.0, 4321.0, 12000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(freqs)), freqs, rtol=1e-12, atol=1e-9)


def test_stft_frames_equal_direct_dft():
    rng = np.random.default_rng(1)
    audio = rng.standard_normal((2, 5000)).astype(np.float32)
    n_fft, hop, win = 1024, 480, 960
    window = hann_window(win, n_fft)
    spec = stft(audio, n_fft, hop, window)
    assert spec.shape == (2, 1 + 5000 // hop, n_fft // 2 + 1)
    padded = np.pad(audio.astype(np.float64), ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    for t in (0, 3, spec.shape[1] - 1):
        frame = padded[:, t * hop : t * hop + n_fft] * window
        np.testing.assert_allclose(spec[:, t], np.fft.rfft(frame, axis=-1), rtol=1e-4, atol=1e-3)


def test_hann_window_is_periodic_and_centred():
    window = hann_window(960, 1024)
    assert window.shape == (1024,)
    assert (window[:32] == 0).all() and (window[-32:] == 0).all()
    assert window[32] == 0.0 and window[32 + 480] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kind", "shape"),
    [("foa_logmel_iv", (7, 250, 64)), ("foa_logmel_iv_128", (7, 400, 128)), ("foa_linspec_iv", (7, 400, 257)),
     ("stereo_logmel", (2, 251, 64)), ("mic_logmel", (4, 250, 64)), ("mic_logmel_ast", (4, 500, 128)),
     ("foa_logmel_iv_ast", (7, 500, 128))],
)  # fmt: skip
def test_feature_shapes_for_a_5_second_clip(kind, shape):
    config = feature_config(kind)
    audio = plane_wave_foa(5.0, 30.0, 0.0)[: config.in_channels]
    features = compute_features(audio, config)
    assert features.shape == shape and features.dtype == np.float32
    assert np.isfinite(features).all()
    assert config.n_frames(audio.shape[1]) == shape[1] and config.out_channels == shape[0]


@pytest.mark.parametrize("kind", ["foa_logmel_iv", "foa_logmel_iv_128", "foa_linspec_iv", "foa_logmel_iv_ast"])
@pytest.mark.parametrize(("azimuth", "elevation"), [(60.0, 20.0), (-135.0, -30.0)])
def test_intensity_vector_points_at_the_source(kind, azimuth, elevation):
    audio = plane_wave_foa(1.0, azimuth, elevation, noise=0.0)
    features = compute_features(audio, feature_config(kind))
    iv = features[4:].sum(axis=(1, 2))
    from seld_edge.geometry import polar_to_unit

    assert angular_distance_deg(iv, polar_to_unit(azimuth, elevation)) < 1.0


def test_power_to_db_clips_each_channel_to_top_db_below_its_own_maximum():
    power = np.array([[[1.0, 1e-12]], [[1e-4, 1e-20]]], dtype=np.float32)
    db = power_to_db(power, top_db=80.0)
    np.testing.assert_allclose(db, [[[0.0, -80.0]], [[-40.0, -100.0]]], atol=1e-4)
    np.testing.assert_allclose(power_to_db(power, top_db=None)[1], [[-40.0, -100.0]], atol=1e-4)


def test_feature_config_round_trips_through_json():
    for config in FEATURE_KINDS.values():
        assert FeatureConfig.from_json(config.to_json()) == config
    data = json.loads(FEATURE_KINDS["foa_logmel_iv"].to_json())
    data["hop"] = 10
    with pytest.raises(SeldEdgeError, match="unknown feature config key 'hop'; known: kind, audio_format, sample_rate"):
        FeatureConfig.from_json(json.dumps(data))


def test_unknown_kind_suggests_the_close_match():
    with pytest.raises(SeldEdgeError, match="did you mean foa_logmel_iv"):
        feature_config("foa_logmel_vi")


def test_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match=r"expected audio of shape \(2, N\)"):
        compute_features(plane_wave_foa(1.0, 0.0, 0.0), feature_config("stereo_logmel"))


class TestTorchTwin:
    """training.frontend must compute the numpy features (design: one definition, twin tested)."""

    torch = pytest.importorskip("torch")

    @pytest.mark.parametrize("kind", list(FEATURE_KINDS))
    def test_torch_twin_matches_numpy(self, kind):
        from training.frontend import FeatureExtractor

        config = feature_config(kind)
        clips = [
            plane_wave_foa(3.0, az, el, seed=i)[: config.in_channels]
            for i, (az, el) in enumerate([(40, 10), (-100, -20)])
        ]
        reference = np.stack([compute_features(clip, config) for clip in clips])
        with self.torch.inference_mode():
            twin = FeatureExtractor(config)(self.torch.from_numpy(np.stack(clips))).numpy()
        assert twin.shape == reference.shape
        c = config.in_channels
        # A linear spectrogram is held on its loud bins only (compared_bins says why); mel kinds on every bin.
        error = np.abs(twin - reference)
        held = compared_bins(reference, config)
        held = np.ones_like(error, bool) if held is None else held
        log_error = error[:, :c][held[:, :c]]
        print(f"{kind}: log spectrum max abs error {log_error.max():.2e} dB")
        assert log_error.max() <= 1e-3
        assert feature_difference(reference, twin, config) == pytest.approx(error[held].max())
        if config.iv_norm:
            iv_error = error[:, c:][held[:, c:]]
            print(f"{kind}: intensity vector max abs error {iv_error.max():.2e}")
            # Per-bin L2-normalised IV without mel averaging is a unit vector even in noise-dominated
            # bins, where it amplifies FFT round-off: 1e-3 there (0.06 degrees), 1e-4 for mel kinds.
            assert iv_error.max() <= (1e-4 if config.n_mels else 1e-3)


def test_feature_frames_per_label_frame():
    assert feature_config("foa_logmel_iv").frames_per_label(10.0) == 5
    assert feature_config("foa_logmel_iv_128").frames_per_label(10.0) == 8
    for kind in ("mic_logmel_ast", "foa_logmel_iv_ast"):  # M2M-AST: a 3 s input is 300 frames, 10 per label
        config = feature_config(kind)
        assert config.frames_per_label(10.0) == 10 and config.n_frames(3 * config.sample_rate) == 300
    with pytest.raises(SeldEdgeError, match="does not divide"):
        feature_config("foa_logmel_iv", hop_length=512).frames_per_label(10.0)

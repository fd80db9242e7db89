"""Training augmentation: each effect in numbers, probabilities, purity, determinism, config checks."""

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest

from seld_edge.errors import SeldEdgeError
from seld_edge.features import compute_features, feature_config
from seld_edge.foa_transforms import FOA_TRANSFORMS
from seld_edge.formats.dcase_csv import Event
from tests.conftest import plane_wave_foa
from training.augment import (
    AUGMENTATIONS,
    AUGMIX_OPS,
    Augment,
    Augmentation,
    AugMix,
    ChannelSwap,
    Cutout,
    FoaRotation,
    FreqShift,
    SpecAugment,
    augmix_blend,
    build_augmentations,
)

T, F = 40, 16


def foa_chunk(seed: int = 0) -> np.ndarray:
    """7 x T x F: log spectra around -40 dB (so their mean is far from the IV fill 0), IV in [-1, 1]."""
    rng = np.random.default_rng(seed)
    spectra = -40.0 + 10.0 * rng.standard_normal((4, T, F))
    iv = rng.uniform(-1.0, 1.0, (3, T, F))
    return np.concatenate([spectra, iv]).astype(np.float32)


def stereo_chunk(seed: int = 0) -> np.ndarray:
    return (-40.0 + 10.0 * np.random.default_rng(seed).standard_normal((2, T, F))).astype(np.float32)


EVENTS = [Event(3, 1, 0, 30.0, 10.0, 2.5), Event(4, 1, 0, -120.0, -20.0, 2.5), Event(4, 7, 1, 0.0, 0.0, 1.0)]

FOA_AUGMENTATIONS = [
    FoaRotation(),
    FreqShift(p=1.0, max_bins=3),
    SpecAugment(time_masks=2, time_width=8, freq_masks=2, freq_width=4),
    Cutout(p=1.0),
    AugMix(max_shift_bins=3, time_width=8, freq_width=4),
]
STEREO_AUGMENTATIONS = [
    ChannelSwap(p=1.0),
    FreqShift(p=1.0, max_bins=3),
    SpecAugment(time_masks=2, time_width=8, freq_masks=2, freq_width=4, spectral_channels=2),
    Cutout(p=1.0, spectral_channels=2),
    AugMix(max_shift_bins=3, time_width=8, freq_width=4, spectral_channels=2),
]
ALL = [(aug, foa_chunk) for aug in FOA_AUGMENTATIONS] + [(aug, stereo_chunk) for aug in STEREO_AUGMENTATIONS]
IDS = [f"{type(aug).__name__}-{make.__name__}" for aug, make in ALL]


def changed_mask(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return before != after


# ---------------------------------------------------------------- FOA rotation


def test_foa_rotation_draws_the_16_transforms_uniformly_and_moves_features_with_labels():
    features = foa_chunk()
    event = Event(0, 2, 0, 23.0, 37.0, 3.0)  # 23/37 deg: the 16 transforms give 16 distinct directions
    images = {}
    for index, t in enumerate(FOA_TRANSFORMS):
        (moved,) = t.events([event])
        images[(moved.azimuth, moved.elevation)] = index
    assert len(images) == 16
    counts = Counter()
    for seed in range(1600):
        augmented, (moved,) = FoaRotation()(features, [event], np.random.default_rng(seed))
        index = images[(moved.azimuth, moved.elevation)]
        counts[index] += 1
        np.testing.assert_array_equal(augmented, FOA_TRANSFORMS[index].features(features))
        assert (moved.frame, moved.class_index, moved.source, moved.distance) == (0, 2, 0, 3.0)
    assert sorted(counts) == list(range(16)), "identity included"
    assert min(counts.values()) >= 60 and max(counts.values()) <= 140, f"expected ~100 each, got {counts}"


# ---------------------------------------------------------------- channel swap


def test_channel_swap_swaps_left_right_and_negates_azimuth():
    features = stereo_chunk()
    augmented, events = ChannelSwap(p=1.0)(features, EVENTS, np.random.default_rng(0))
    np.testing.assert_array_equal(augmented[0], features[1])
    np.testing.assert_array_equal(augmented[1], features[0])
    assert [e.azimuth for e in events] == [-30.0, 120.0, 0.0]
    assert str(events[2].azimuth) == "0.0", "no -0.0 for an event straight ahead"
    assert [(e.frame, e.class_index, e.source, e.elevation, e.distance) for e in events] == [
        (e.frame, e.class_index, e.source, e.elevation, e.distance) for e in EVENTS
    ]
    with pytest.raises(ValueError, match="2-channel stereo"):
        ChannelSwap(p=1.0)(foa_chunk(), EVENTS, np.random.default_rng(0))


def test_channel_swap_is_the_stereo_image_of_the_mirrored_scene():
    """L = W + Y, R = W - Y: swapping the stereo features equals the features of the FOA scene mirrored
    in y (the source moved from azimuth 40 to -40), so the negated label is the right one."""
    config = feature_config("stereo_logmel")
    foa = plane_wave_foa(0.5, azimuth=40.0, elevation=10.0)
    mirrored = foa * np.array([1.0, -1.0, 1.0, 1.0], dtype=np.float32)[:, None]

    def stereo(audio: np.ndarray) -> np.ndarray:
        return compute_features(np.stack([audio[0] + audio[1], audio[0] - audio[1]]), config)

    swapped, (event,) = ChannelSwap(p=1.0)(stereo(foa), [Event(0, 0, 0, 40.0)], np.random.default_rng(0))
    np.testing.assert_array_equal(swapped, stereo(mirrored))
    assert event.azimuth == -40.0


# ---------------------------------------------------------------- SpecAugment


def test_spec_augment_time_masks_are_whole_frames_filled_with_channel_means_and_zero_iv():
    features = foa_chunk()
    means = features[:4].mean(axis=(1, 2))
    widths = Counter()
    starts = set()
    aug = SpecAugment(time_masks=1, time_width=6, freq_masks=0)
    for seed in range(300):
        augmented, events = aug(features, EVENTS, np.random.default_rng(seed))
        assert events is EVENTS
        frames = np.flatnonzero(changed_mask(features, augmented).any(axis=(0, 2)))
        widths[len(frames)] += 1
        if len(frames):
            assert np.array_equal(frames, np.arange(frames[0], frames[-1] + 1)), "one contiguous mask"
            starts.add(int(frames[0]))
            np.testing.assert_allclose(augmented[:4, frames], means[:, None, None] + np.zeros((4, len(frames), F)))
            np.testing.assert_array_equal(augmented[4:, frames], 0.0)
        untouched = np.setdiff1d(np.arange(T), frames)
        np.testing.assert_array_equal(augmented[:, untouched], features[:, untouched])
    assert sorted(widths) == list(range(7)), f"widths 0..6 inclusive, got {sorted(widths)}"
    assert 0 in starts and T - 6 in starts, "masks reach both ends of the chunk"


def test_spec_augment_frequency_masks_cover_all_frames_and_channels():
    features = stereo_chunk()
    means = features.mean(axis=(1, 2))
    aug = SpecAugment(time_masks=0, freq_masks=2, freq_width=4, spectral_channels=2)
    widest = 0
    for seed in range(100):
        augmented, _ = aug(features, EVENTS, np.random.default_rng(seed))
        bins = np.flatnonzero(changed_mask(features, augmented).any(axis=(0, 1)))
        widest = max(widest, len(bins))
        assert len(bins) <= 8, "two masks of at most 4 bins"
        for channel in range(2):
            np.testing.assert_allclose(augmented[channel][:, bins], means[channel])  # stereo: both are spectra
        np.testing.assert_array_equal(np.delete(augmented, bins, axis=2), np.delete(features, bins, axis=2))
    assert widest >= 7


# ---------------------------------------------------------------- cutout


def test_cutout_erases_one_rectangle_on_all_channels():
    features = foa_chunk()
    low, high = features[:4].min(), features[:4].max()
    aug = Cutout(p=1.0, area=(0.05, 0.2), aspect=(0.5, 2.0))
    for seed in range(100):
        augmented, events = aug(features, EVENTS, np.random.default_rng(seed))
        assert events is EVENTS
        changed = changed_mask(features, augmented)
        frames = np.flatnonzero(changed.any(axis=(0, 2)))
        bins = np.flatnonzero(changed.any(axis=(0, 1)))
        hole = (slice(None), slice(frames[0], frames[-1] + 1), slice(bins[0], bins[-1] + 1))
        assert changed[hole].all(), "a full rectangle on every channel"
        assert changed.sum() == changed[hole].size
        values = np.unique(augmented[:4][hole])
        assert len(values) == 1 and low <= values[0] <= high, "one level for all spectra, within the chunk's range"
        np.testing.assert_array_equal(augmented[4:][hole], 0.0)
        height, width = len(frames), len(bins)
        assert 0.05 * T * F * 0.6 <= height * width <= 0.2 * T * F * 1.4, "area within range (rounding aside)"
        assert 0.5 / 1.6 <= (height / T) / (width / F) <= 2.0 * 1.6, "aspect relative to the chunk's shape"


# ---------------------------------------------------------------- frequency shift


def test_freq_shift_moves_all_channels_by_k_bins_with_edge_fill():
    features = foa_chunk()
    shifts = Counter()
    for seed in range(200):
        augmented, events = FreqShift(p=1.0, max_bins=3)(features, EVENTS, np.random.default_rng(seed))
        assert events is EVENTS
        matches = []
        for k in range(1, 4):
            up = np.concatenate([np.repeat(features[:, :, :1], k, axis=2), features[:, :, :-k]], axis=2)
            down = np.concatenate([features[:, :, k:], np.repeat(features[:, :, -1:], k, axis=2)], axis=2)
            matches += [k] * np.array_equal(augmented, up) + [-k] * np.array_equal(augmented, down)
        assert len(matches) == 1, "exactly one shift explains the output"
        shifts[matches[0]] += 1
    assert sorted(shifts) == [-3, -2, -1, 1, 2, 3]
    assert 70 <= sum(n for k, n in shifts.items() if k > 0) <= 130, "up and down equally likely"


# ---------------------------------------------------------------- AugMix


def test_augmix_blend_is_the_convex_mixture_and_m_zero_is_the_input():
    x = stereo_chunk()
    a, b = x + 3.0, x - 1.0
    np.testing.assert_array_equal(augmix_blend(x, [a, b], np.array([0.25, 0.75]), 0.0), x)
    np.testing.assert_array_equal(augmix_blend(x, [a], np.array([1.0]), 1.0), a)
    # Hand-computed: 0.6 x + 0.4 (0.25 (x + 3) + 0.75 (x - 1)) = x + 0.4 (0.75 - 0.75) = x.
    np.testing.assert_allclose(augmix_blend(x, [a, b], np.array([0.25, 0.75]), 0.4), x, atol=1e-5)
    # 0.5 x + 0.5 (x + 3) = x + 1.5
    np.testing.assert_allclose(augmix_blend(x, [a, x], np.array([1.0, 0.0]), 0.5), x + 1.5, atol=1e-5)


def test_augmix_follows_algorithm_1_draw_for_draw():
    """Dirichlet chain weights, a Beta blend weight, then the chains, from the one generator."""
    features = stereo_chunk()
    aug = AugMix(max_shift_bins=3, time_width=8, freq_width=4, spectral_channels=2)
    for seed in range(5):
        got, events = aug(features, EVENTS, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        assert rng.random() < aug.p
        weights = rng.dirichlet([1.0, 1.0, 1.0])
        m = rng.beta(1.0, 1.0)
        chains = [aug.chain(features, EVENTS, rng) for _ in range(3)]
        expected = (1 - m) * features + m * sum(w * c for w, c in zip(weights, chains, strict=True))
        np.testing.assert_allclose(got, expected, atol=1e-4)
        assert events is EVENTS, "labels unchanged"
        assert float(np.abs(got - features).mean()) > 1e-3, "it does augment"


def test_augmix_gains_and_filters_keep_the_level_difference_between_channels():
    """Every op acts on all spectra alike; with gains and equalisers only, L - R (the direction cue of
    stereo log-mel) is exactly kept, and the change is one curve over frequency within the ops' range."""
    features = stereo_chunk()
    aug = AugMix(ops=("gain", "filter"), max_gain_db=6.0, max_filter_db=6.0, spectral_channels=2)
    for seed in range(30):
        out, _ = aug(features, EVENTS, np.random.default_rng(seed))
        np.testing.assert_allclose(out[0] - out[1], features[0] - features[1], atol=1e-4)
        change = out - features
        np.testing.assert_allclose(change, np.broadcast_to(change[:1, :1], change.shape), atol=1e-4)
        assert float(np.abs(change).max()) <= 3 * 6.0 + 1e-4, "a convex mixture of up to three ops of at most 6 dB"
    foa = foa_chunk()
    out, _ = AugMix(ops=("gain", "filter"))(foa, EVENTS, np.random.default_rng(0))
    np.testing.assert_allclose(out[4:], foa[4:], atol=1e-6)  # intensity vectors keep their values
    assert float(np.abs(out[:4] - foa[:4]).max()) > 0.1


def test_augmix_chains_have_one_to_max_depth_ops():
    """With gains only, a chain adds the sum of its gains: one to three of them, each within +-6 dB."""
    features = stereo_chunk()
    aug = AugMix(ops=("gain",), max_depth=3, max_gain_db=6.0, spectral_channels=2)
    depths = Counter()
    for seed in range(300):
        rng = np.random.default_rng(seed)
        chain = aug.chain(features, EVENTS, rng)
        offset = float((chain - features).mean())
        np.testing.assert_allclose(chain - features, offset, atol=1e-4)
        replay = np.random.default_rng(seed)
        depth = int(replay.integers(1, 4))
        gains = []
        for _ in range(depth):
            replay.integers(1)  # the op drawn: the only one
            gains.append(replay.uniform(-6.0, 6.0))
        assert offset == pytest.approx(sum(gains), abs=1e-3)
        depths[depth] += 1
    assert sorted(depths) == [1, 2, 3] and min(depths.values()) > 70


def test_augmix_options_are_checked():
    with pytest.raises(ValueError, match="ops must be some of gain, filter"):
        AugMix(ops=("rotate",))
    with pytest.raises(ValueError, match="alpha must be > 0"):
        AugMix(alpha=0.0)
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        AugMix(width=0)
    assert AUGMIX_OPS == ("gain", "filter", "freq_shift", "time_mask", "freq_mask")


# ---------------------------------------------------------------- shared properties


@dataclass(frozen=True)
class AddOne(Augmentation):
    def apply(self, features, events, rng):
        return features + 1.0, events


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_probability_p_is_the_fraction_of_chunks_augmented(p):
    features = foa_chunk()
    applied = sum(
        not np.array_equal(AddOne(p=p)(features, EVENTS, np.random.default_rng(seed))[0], features)
        for seed in range(1000)
    )
    assert applied == pytest.approx(1000 * p, abs=45)
    if p in (0.0, 1.0):
        assert applied == 1000 * p, "p = 0 never applies, p = 1 always"


@pytest.mark.parametrize(("aug", "make"), ALL, ids=IDS)
def test_p_zero_returns_the_input_unchanged(aug, make):
    features = make()
    off = type(aug)(**{**aug.__dict__, "p": 0.0})
    out, events = off(features, EVENTS, np.random.default_rng(0))
    assert out is features and events is EVENTS


@pytest.mark.parametrize(("aug", "make"), ALL, ids=IDS)
def test_never_writes_to_the_input_and_returns_fresh_float32(aug, make):
    features = make()
    reference = features.copy()
    events = list(EVENTS)
    features.setflags(write=False)  # an in-place write would raise
    for seed in range(20):
        out, _ = aug(features, events, np.random.default_rng(seed))
        assert out.shape == features.shape and out.dtype == np.float32
        assert not np.shares_memory(out, features), "safe to modify the output in place"
    np.testing.assert_array_equal(features, reference)
    assert events == EVENTS


@pytest.mark.parametrize(("aug", "make"), ALL, ids=IDS)
def test_deterministic_for_a_seeded_generator(aug, make):
    features = make()
    first = aug(features, EVENTS, np.random.default_rng(7))
    second = aug(features, EVENTS, np.random.default_rng(7))
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1] == second[1]
    sometimes = type(aug)(**{**aug.__dict__, "p": 0.5})  # a swap at p = 1 has no other randomness
    outputs = {sometimes(features, EVENTS, np.random.default_rng(seed))[0].tobytes() for seed in range(10)}
    assert len(outputs) > 1, "different seeds give different augmentations"


def test_augment_applies_in_order_with_one_generator():
    features = foa_chunk()
    chain = Augment((FoaRotation(), FreqShift(p=1.0), SpecAugment(), Cutout(p=1.0)))
    rng = np.random.default_rng(3)
    expected, expected_events = features, EVENTS
    for aug in chain.augmentations:
        expected, expected_events = aug(expected, expected_events, rng)
    got, got_events = chain(features, EVENTS, np.random.default_rng(3))
    np.testing.assert_array_equal(got, expected)
    assert got_events == expected_events


def test_rejects_features_without_channel_time_frequency_axes():
    with pytest.raises(ValueError, match=r"\(C, T, F\)"):
        SpecAugment()(np.zeros((T, F), np.float32), EVENTS, np.random.default_rng(0))


# ---------------------------------------------------------------- build_augmentations


def test_build_defaults_follow_the_papers_scaled_to_the_feature_kind():
    everything = {"foa_rotation": True, "freq_shift": True, "spec_augment": True, "cutout": True}
    chain = build_augmentations(everything, "foa_logmel_iv")
    assert chain == Augment(
        (
            FoaRotation(p=1.0),
            FreqShift(p=0.5, max_bins=5),  # 8 % of 64 bins
            SpecAugment(p=1.0, time_masks=2, time_width=50, freq_masks=2, freq_width=22, spectral_channels=4),
            Cutout(p=0.5, area=(0.02, 0.4), aspect=(0.3, 1 / 0.3), spectral_channels=4),
        )
    )
    chain = build_augmentations(everything, "foa_logmel_iv_128")
    assert chain.augmentations[1].max_bins == 10
    assert (chain.augmentations[2].time_width, chain.augmentations[2].freq_width) == (80, 43)  # hop 300: 80 frames/s
    stereo = build_augmentations({"channel_swap": True, "cutout": True}, "stereo_logmel")
    assert stereo == Augment((ChannelSwap(p=0.5), Cutout(spectral_channels=2)))
    # AugMix: width 3, depth 1-3, alpha 1 (Hendrycks et al.); shift and masks as freq_shift and spec_augment.
    (augmix,) = build_augmentations({"augmix": True}, "stereo_logmel").augmentations
    assert augmix == AugMix(p=1.0, width=3, max_depth=3, alpha=1.0, max_shift_bins=5, time_width=50, freq_width=22,
                            spectral_channels=2)  # fmt: skip
    (augmix,) = build_augmentations({"augmix": {"ops": ["gain", "filter"], "p": 0.5}}, "foa_logmel_iv").augmentations
    assert augmix.ops == ("gain", "filter") and augmix.p == 0.5 and augmix.spectral_channels == 4


def test_build_options_override_defaults_and_off_values_switch_off():
    settings = {
        "cutout": {"p": 0.25, "area": [0.1, 0.2]},
        "spec_augment": {"time_masks": 2, "time_width": 10, "freq_masks": 2, "freq_width": 8},
        "foa_rotation": True,
        "channel_swap": False,
        "freq_shift": None,
    }
    chain = build_augmentations(settings, "foa_linspec_iv")
    assert [type(a) for a in chain.augmentations] == [FoaRotation, SpecAugment, Cutout], "fixed order"
    assert chain.augmentations[1] == SpecAugment(time_masks=2, time_width=10, freq_masks=2, freq_width=8)
    assert chain.augmentations[2] == Cutout(p=0.25, area=(0.1, 0.2))
    assert build_augmentations({}, "foa_logmel_iv") is None
    assert build_augmentations({"foa_rotation": False, "cutout": None}, "foa_logmel_iv") is None


@pytest.mark.parametrize(
    ("settings", "kind", "message"),
    [
        ({"rotation": True}, "foa_logmel_iv", "unknown augmentation 'rotation'; did you mean foa_rotation"),
        (
            {"freq_shift": {"max_shift": 3}},
            "foa_logmel_iv",
            "unknown freq_shift option 'max_shift'; known: max_bins, p",
        ),
        ({"foa_rotation": True}, "stereo_logmel", "foa_rotation needs FOA features.*'stereo_logmel'.*channel_swap"),
        ({"channel_swap": True}, "foa_logmel_iv", "channel_swap applies to 2-channel stereo.*'foa_logmel_iv'"),
        ({"cutout": "yes"}, "foa_logmel_iv", "cutout must be true, false or a mapping"),
        ({"cutout": {"p": 1.5}}, "foa_logmel_iv", r"p must be in \[0, 1\]"),
        ({"cutout": {"area": [0.5, 0.1]}}, "foa_logmel_iv", "area must be"),
        ({"cutout": {"aspect": [0.0, 2.0]}}, "foa_logmel_iv", "aspect must be"),
        ({"spec_augment": {"time_width": -1}}, "foa_logmel_iv", "time_width must be an integer >= 0"),
        ({"spec_augment": {"freq_masks": 1.5}}, "foa_logmel_iv", "freq_masks must be an integer"),
        ({"freq_shift": {"max_bins": 0}}, "foa_logmel_iv", "max_bins must be an integer >= 1"),
        ({"augmix": {"ops": ["shear"]}}, "stereo_logmel", "ops must be some of"),
        ({"augmix": {"depth": 2}}, "stereo_logmel", r"unknown augmix option 'depth'; did you mean max_depth or width"),
    ],
)
def test_build_rejects_bad_settings_with_a_clear_message(settings, kind, message):
    with pytest.raises((ValueError, SeldEdgeError), match=message):
        build_augmentations(settings, kind)


def test_known_augmentation_names():
    assert AUGMENTATIONS == ("foa_rotation", "channel_swap", "freq_shift", "augmix", "spec_augment", "cutout")

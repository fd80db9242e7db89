"""The 16 FOA rotations/reflections: group structure, audio/feature/label consistency, and the
augmentation's features and labels pointing the same way after a random rotation."""

import itertools

import numpy as np
import pytest

from seld_edge.errors import SeldEdgeError
from seld_edge.features import FEATURE_KINDS, compute_features, feature_config
from seld_edge.foa_transforms import FOA_TRANSFORMS
from seld_edge.formats.dcase_csv import Event
from seld_edge.geometry import angular_distance_deg, polar_to_unit
from seld_edge.synth import SceneEvent, label_events, render_scene, sample_room
from tests.conftest import plane_wave_foa
from training.augment import build_augmentations

# Every feature kind with an intensity vector: the rotations must move its IV with the labels.
IV_KINDS = tuple(kind for kind, config in FEATURE_KINDS.items() if config.iv_norm)


def _key(matrix: np.ndarray) -> tuple[int, ...]:
    return tuple(np.rint(matrix).astype(int).ravel().tolist())


def test_sixteen_distinct_signed_permutations_forming_a_group():
    matrices = [t.matrix for t in FOA_TRANSFORMS]
    assert len(matrices) == 16
    assert len({_key(m) for m in matrices}) == 16, "all 16 matrices are distinct"
    np.testing.assert_array_equal(matrices[0], np.eye(3))
    for m in matrices:
        assert set(np.unique(m).tolist()) <= {-1.0, 0.0, 1.0}
        np.testing.assert_array_equal(np.abs(m).sum(axis=0), [1, 1, 1])
        np.testing.assert_array_equal(np.abs(m).sum(axis=1), [1, 1, 1])
        assert abs(np.linalg.det(m)) == pytest.approx(1.0)
        # Elevation only changes sign; azimuth maps inside the horizontal plane.
        np.testing.assert_array_equal(np.abs(m[2]), [0, 0, 1])
        np.testing.assert_array_equal(np.abs(m[:, 2]), [0, 0, 1])
    keys = {_key(m) for m in matrices}
    for t in FOA_TRANSFORMS:
        assert _key(t.inverse.matrix) in keys, f"inverse of {t.name} is one of the 16"
        np.testing.assert_array_equal(t.matrix @ t.inverse.matrix, np.eye(3))
    for a, b in itertools.product(matrices, repeat=2):
        assert _key(a @ b) in keys, "the 16 are closed under composition"
    assert sum(np.linalg.det(m) > 0 for m in matrices) == 8, "8 rotations and 8 reflections"


def test_each_transform_maps_azimuth_to_plus_minus_phi_plus_quarter_turns():
    azimuth, elevation = 23.0, 37.0
    seen = set()
    for t in FOA_TRANSFORMS:
        (event,) = t.events([Event(0, 0, 0, azimuth, elevation)])
        sign = 1 if t.matrix[2, 2] > 0 else -1
        assert event.elevation == pytest.approx(sign * elevation)
        matches = [
            (mirror, k)
            for mirror, k in itertools.product((1, -1), range(4))
            if np.isclose((event.azimuth - (mirror * azimuth + 90 * k) + 180) % 360 - 180, 0.0, atol=1e-6)
        ]
        assert len(matches) == 1, f"{t.name}: azimuth {event.azimuth} is not +-phi + k 90"
        seen.add((*matches[0], sign))
    assert len(seen) == 16, "every (mirror, quarter turns, elevation sign) occurs once"


@pytest.mark.parametrize("kind", IV_KINDS)
def test_audio_transform_then_features_equals_features_then_feature_transform(kind):
    config = feature_config(kind)
    foa = plane_wave_foa(1.0, azimuth=50.0, elevation=30.0, seed=3)
    features = compute_features(foa, config)
    worst_spectra = worst_iv = 0.0
    for t in FOA_TRANSFORMS:
        from_audio = compute_features(t.audio(foa), config)
        from_features = t.features(features)
        assert from_features.shape == features.shape and from_features.dtype == np.float32
        worst_spectra = max(worst_spectra, float(np.abs(from_audio[:4] - from_features[:4]).max()))
        worst_iv = max(worst_iv, float(np.abs(from_audio[4:] - from_features[4:]).max()))
    print(f"{kind}: max abs error log spectra {worst_spectra:.2e} dB, IV {worst_iv:.2e}")
    assert worst_spectra <= 1e-4
    assert worst_iv <= 1e-5


def test_audio_transform_moves_a_plane_wave_to_the_transformed_direction():
    """t.audio of a plane wave from d is the plane wave from M d (the sources of truth agree)."""
    azimuth, elevation = 50.0, 30.0
    foa = plane_wave_foa(0.2, azimuth, elevation, noise=0.0)
    source = foa[0]
    for t in FOA_TRANSFORMS:
        x, y, z = t.vectors(polar_to_unit(azimuth, elevation))
        expected = np.stack([source, y * source, z * source, x * source])
        np.testing.assert_allclose(t.audio(foa), expected, atol=1e-6)


def test_features_inverse_undoes_the_transform():
    features = np.random.default_rng(0).standard_normal((7, 20, 16)).astype(np.float32)
    for t in FOA_TRANSFORMS:
        np.testing.assert_array_equal(t.inverse.features(t.features(features)), features)
    # 4 log spectra without intensity vectors: permuted like the first four channels of the 7
    for t in FOA_TRANSFORMS:
        np.testing.assert_array_equal(t.features(features[:4]), t.features(features)[:4])
    with pytest.raises(ValueError, match="4 spectra"):
        FOA_TRANSFORMS[1].features(features[:5])


def test_features_transform_is_the_matrix_on_the_intensity_vector_and_a_permutation_of_the_spectra():
    """The transform is computed as a signed gather of channels; it must be the matrix's definition."""
    features = np.random.default_rng(1).standard_normal((7, 12, 5)).astype(np.float32)
    xyz_channels = [3, 1, 2]  # ACN: W, Y, Z, X
    for t in FOA_TRANSFORMS:
        out = t.features(features)
        np.testing.assert_array_equal(out[4:], np.tensordot(t.matrix.astype(np.float32), features[4:], axes=1))
        np.testing.assert_array_equal(out[0], features[0])
        mixed = np.tensordot(np.abs(t.matrix).astype(np.float32), features[xyz_channels], axes=1)
        np.testing.assert_array_equal(out[xyz_channels], mixed)
        assert out.dtype == np.float32 and out is not features


def test_feature_configs_say_which_transforms_their_features_take():
    from seld_edge.features import feature_config
    from seld_edge.foa_transforms import STEREO_TRANSFORMS

    assert len(feature_config("foa_logmel_iv").spatial_transforms) == 16
    stereo = feature_config("stereo_logmel")
    assert stereo.spatial_transforms == STEREO_TRANSFORMS and len(STEREO_TRANSFORMS) == 2
    features = np.random.default_rng(1).standard_normal((2, 10, 8)).astype(np.float32)
    identity, mirror = STEREO_TRANSFORMS
    np.testing.assert_array_equal(stereo.transform(features, identity), features)
    np.testing.assert_array_equal(stereo.transform(features, mirror), features[::-1])  # L and R swap
    assert mirror.events([Event(0, 0, 0, 30.0, 0.0)])[0].azimuth == -30.0  # the mirror negates azimuth
    with pytest.raises(SeldEdgeError, match="stereo_logmel features have no transform"):
        stereo.transform(features, FOA_TRANSFORMS[2])


def test_events_transform_agrees_with_vectors_transform():
    rng = np.random.default_rng(1)
    events = [
        Event(frame, int(rng.integers(13)), frame % 3, rng.uniform(-180, 180), rng.uniform(-80, 80), 1.5 + frame)
        for frame in range(20)
    ]
    xyz = polar_to_unit([e.azimuth for e in events], [e.elevation for e in events])
    for t in FOA_TRANSFORMS:
        moved = t.events(events)
        got = polar_to_unit([e.azimuth for e in moved], [e.elevation for e in moved])
        assert angular_distance_deg(got, t.vectors(xyz)).max() < 1e-4
        assert [(e.frame, e.class_index, e.source, e.distance) for e in moved] == [
            (e.frame, e.class_index, e.source, e.distance) for e in events
        ]
        back = t.inverse.events(moved)
        back_xyz = polar_to_unit([e.azimuth for e in back], [e.elevation for e in back])
        assert angular_distance_deg(back_xyz, xyz).max() < 1e-4
    assert FOA_TRANSFORMS[5].events([]) == []


@pytest.mark.parametrize("kind", IV_KINDS)
def test_rotation_augmentation_keeps_iv_and_label_directions_together(kind):
    """The issue's test: one static source, rendered by the scene generator without reflections;
    after a random rotation through the augmentation, the IV summed over the event's active frames
    points at the augmented label, for every one of the 16 transforms."""
    rng = np.random.default_rng(0)
    # Male speech: sound in most active frames (a sparse knock leaves many of its labelled frames to the
    # diffuse background, whose IV points anywhere, and bends even the unrotated sum by several degrees).
    event = SceneEvent(class_index=1, source=0, onset=1.0, duration=2.5, azimuth=50.0, azimuth_rate=0.0,
                       elevation=30.0, distance=2.0)  # fmt: skip
    audio = render_scene([event], 5.0, rng, sample_room(rng), reflections=False)
    labels = label_events([event])
    features = compute_features(audio, feature_config(kind))
    n_label_frames = 50
    per_label = features.shape[1] // n_label_frames
    augment = build_augmentations({"foa_rotation": True}, kind)

    directions_seen: dict[tuple[float, float], float] = {}
    for seed in range(200):
        augmented, moved = augment(features, labels, np.random.default_rng(seed))
        assert len({(e.azimuth, e.elevation) for e in moved}) == 1, "a static source stays static"
        active = np.concatenate([np.arange(e.frame * per_label, (e.frame + 1) * per_label) for e in moved])
        iv_sum = augmented[4:, active].sum(axis=(1, 2))
        label = polar_to_unit(moved[0].azimuth, moved[0].elevation)
        directions_seen[(moved[0].azimuth, moved[0].elevation)] = float(angular_distance_deg(iv_sum, label))
        if len(directions_seen) == 16:
            break
    print(f"{kind}: worst IV vs label angle over the 16 transforms {max(directions_seen.values()):.2f} deg")
    assert len(directions_seen) == 16, "all 16 transforms drawn (az 50, el 30 has 16 distinct images)"
    assert max(directions_seen.values()) <= 5.0

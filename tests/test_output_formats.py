"""Output formats: round trips, the ADPIT slot layout, track unification, stereo folding, the halves of
a two-network model, what each format cannot hold, and errors."""

from collections import defaultdict

import numpy as np
import pytest

from seld_edge.errors import SeldEdgeError
from seld_edge.formats import OUTPUT_FORMATS, get_output_format
from seld_edge.formats.accdoa import adpit_to_multi_accdoa
from seld_edge.formats.dcase_csv import Event
from seld_edge.geometry import angular_distance_deg, fold_azimuth_front, polar_to_unit
from seld_edge.postprocess import PostProcessing


def encode_accdoa(events, n, c, with_distance=False):
    return get_output_format("accdoa", with_distance=with_distance).encode(events, n, c)["accdoa"]


def decode_accdoa(output, c, threshold=0.5):
    fmt = get_output_format("accdoa", with_distance=output.shape[1] == 4 * c)
    return fmt.decode({"accdoa": output}, c, PostProcessing(thresholds=threshold))


def encode_adpit(events, n, c, with_distance=False):
    return get_output_format("multi_accdoa", with_distance=with_distance).encode(events, n, c)["adpit"]


def decode_multi_accdoa(output, c, threshold=0.5, unify_deg=15.0):
    fmt = get_output_format("multi_accdoa", with_distance=output.shape[1] == 12 * c)
    return fmt.decode({"accdoa": output}, c, PostProcessing(thresholds=threshold, unify_deg=unify_deg))


def encode_trackwise(events, n, c):
    targets = get_output_format("trackwise").encode(events, n, c)
    return targets["sed"], targets["doa"]


def decode_trackwise(sed, doa, c, threshold=0.5):
    return get_output_format("trackwise").decode({"sed": sed, "doa": doa}, c, PostProcessing(thresholds=threshold))


def encode_sed_doa(events, n, c):
    targets = get_output_format("sed_doa").encode(events, n, c)
    return targets["sed"], targets["doa"]


def decode_sed_doa(sed, doa, c, threshold=0.5):
    return get_output_format("sed_doa").decode({"sed": sed, "doa": doa}, c, PostProcessing(thresholds=threshold))


N_FRAMES = 6
NUM_CLASSES = 5

# Polyphony 3 of different classes, a lone event, an empty frame (3), and directions near the poles
# and the azimuth wrap; at most one event per class and frame.
DISTINCT_CLASSES = [
    Event(0, 0, 0, 30.0, 10.0, 1.25),
    Event(0, 2, 0, -120.0, -35.0, 2.5),
    Event(0, 4, 0, 179.5, 80.0, 0.75),
    Event(1, 1, 0, -179.5, -89.0, 3.0),
    Event(2, 3, 0, 45.0, 0.0, 4.125),
    Event(5, 0, 0, 0.0, 0.0, 0.5),
]
# Two and three events of one class in a frame (well apart, so unification keeps them apart),
# with source ids that are not 0, 1, 2.
SAME_CLASS = [
    Event(0, 1, 3, 10.0, 0.0, 1.0),
    Event(0, 1, 7, 100.0, 20.0, 2.0),
    Event(0, 2, 0, -60.0, 5.0, 1.5),
    Event(4, 3, 2, -150.0, -10.0, 2.25),
    Event(4, 3, 5, 60.0, 30.0, 3.5),
    Event(4, 3, 9, -30.0, 60.0, 0.8),
]


def _renumbered(events: list[Event], keep_distance: bool) -> list[Event]:
    """Events with sources numbered 0, 1, ... per frame and class in source order, as decoders number them."""
    counts: dict[tuple[int, int], int] = defaultdict(int)
    out = []
    for e in sorted(events, key=lambda e: (e.frame, e.class_index, e.source)):
        key = (e.frame, e.class_index)
        distance = e.distance if keep_distance else None
        out.append(Event(e.frame, e.class_index, counts[key], e.azimuth, e.elevation, distance))
        counts[key] += 1
    return out


def _assert_same_events(decoded: list[Event], expected: list[Event]) -> None:
    assert [(e.frame, e.class_index, e.source) for e in decoded] == [
        (e.frame, e.class_index, e.source) for e in expected
    ]
    for got, want in zip(decoded, expected, strict=True):
        assert isinstance(got.azimuth, float) and isinstance(got.elevation, float)
        assert angular_distance_deg(got.unit_vector(), want.unit_vector()) < 0.01
        if want.distance is None:
            assert got.distance is None
        else:
            assert got.distance == pytest.approx(want.distance, abs=1e-4)


# ------------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("with_distance", [False, True])
def test_accdoa_round_trip(with_distance: bool) -> None:
    target = encode_accdoa(DISTINCT_CLASSES, N_FRAMES, NUM_CLASSES, with_distance=with_distance)
    assert target.dtype == np.float32
    assert target.shape == (N_FRAMES, (4 if with_distance else 3) * NUM_CLASSES)
    decoded = decode_accdoa(target, NUM_CLASSES)
    _assert_same_events(decoded, _renumbered(DISTINCT_CLASSES, with_distance))


def test_accdoa_norm_is_activity_and_layout_is_coordinate_major() -> None:
    target = encode_accdoa(DISTINCT_CLASSES, N_FRAMES, NUM_CLASSES).reshape(N_FRAMES, 3, NUM_CLASSES)
    activity = np.zeros((N_FRAMES, NUM_CLASSES))
    for e in DISTINCT_CLASSES:
        activity[e.frame, e.class_index] = 1.0
    np.testing.assert_allclose(np.linalg.norm(target, axis=1), activity, atol=1e-6)
    # frame 2, class 3 points at azimuth 45, elevation 0: x block, then y block, then z block
    flat = encode_accdoa(DISTINCT_CLASSES, N_FRAMES, NUM_CLASSES)
    np.testing.assert_allclose(flat[2, [3, NUM_CLASSES + 3, 2 * NUM_CLASSES + 3]], [0.7071068, 0.7071068, 0.0])


def test_accdoa_and_sed_doa_keep_the_lowest_source_of_a_class() -> None:
    expected = [Event(0, 1, 0, 10.0, 0.0), Event(0, 2, 0, -60.0, 5.0), Event(4, 3, 0, -150.0, -10.0)]
    _assert_same_events(decode_accdoa(encode_accdoa(SAME_CLASS, N_FRAMES, NUM_CLASSES), NUM_CLASSES), expected)
    sed, doa = encode_sed_doa(SAME_CLASS, N_FRAMES, NUM_CLASSES)
    _assert_same_events(decode_sed_doa(sed, doa, NUM_CLASSES), expected)


@pytest.mark.parametrize("events", [DISTINCT_CLASSES, SAME_CLASS], ids=["distinct", "same_class"])
@pytest.mark.parametrize("with_distance", [False, True])
def test_multi_accdoa_round_trip(events: list[Event], with_distance: bool) -> None:
    labels = encode_adpit(events, N_FRAMES, NUM_CLASSES, with_distance=with_distance)
    assert labels.dtype == np.float32
    assert labels.shape == (N_FRAMES, 6, 5 if with_distance else 4, NUM_CLASSES)
    output = adpit_to_multi_accdoa(labels)
    assert output.shape == (N_FRAMES, 3 * (4 if with_distance else 3) * NUM_CLASSES)
    decoded = decode_multi_accdoa(output, NUM_CLASSES)
    _assert_same_events(decoded, _renumbered(events, with_distance))


@pytest.mark.parametrize("events", [DISTINCT_CLASSES, SAME_CLASS], ids=["distinct", "same_class"])
def test_trackwise_round_trip(events: list[Event]) -> None:
    sed, doa = encode_trackwise(events, N_FRAMES, NUM_CLASSES)
    assert sed.dtype == doa.dtype == np.float32
    assert sed.shape == (N_FRAMES, 3, NUM_CLASSES) and doa.shape == (N_FRAMES, 3, 3)
    np.testing.assert_array_equal(sed.sum(axis=(1, 2)), np.bincount([e.frame for e in events], minlength=N_FRAMES))
    _assert_same_events(decode_trackwise(sed, doa, NUM_CLASSES), _renumbered(events, keep_distance=False))


def test_sed_doa_round_trip() -> None:
    sed, doa = encode_sed_doa(DISTINCT_CLASSES, N_FRAMES, NUM_CLASSES)
    assert sed.dtype == doa.dtype == np.float32
    assert sed.shape == (N_FRAMES, NUM_CLASSES) and doa.shape == (N_FRAMES, 3 * NUM_CLASSES)
    assert set(np.unique(sed)) == {0.0, 1.0}
    _assert_same_events(decode_sed_doa(sed, doa, NUM_CLASSES), _renumbered(DISTINCT_CLASSES, keep_distance=False))


@pytest.mark.parametrize("name", ["accdoa", "multi_accdoa", "trackwise", "sed_doa"])
def test_registry_round_trip_by_name(name: str) -> None:
    fmt = get_output_format(name)
    targets = fmt.encode(DISTINCT_CLASSES, N_FRAMES, NUM_CLASSES)
    assert tuple(targets) == fmt.targets
    outputs = {"accdoa": adpit_to_multi_accdoa(targets["adpit"])} if name == "multi_accdoa" else targets
    decoded = fmt.decode(outputs, NUM_CLASSES, PostProcessing())
    _assert_same_events(decoded, _renumbered(DISTINCT_CLASSES, keep_distance=False))
    assert fmt.csv_form == "cartesian"


def test_every_registered_format_is_a_class_with_its_name() -> None:
    assert sorted(OUTPUT_FORMATS) == ["accdoa", "doa", "multi_accdoa", "sed", "sed_doa", "stereo_accdoa", "trackwise"]
    for name, cls in OUTPUT_FORMATS.items():
        assert cls.name == name and get_output_format(name).name == name


def test_unknown_options_get_suggestions() -> None:
    with pytest.raises(SeldEdgeError, match="did you mean with_distance"):
        get_output_format("accdoa", with_distanse=True)
    with pytest.raises(SeldEdgeError, match="sed_doa takes no options"):
        get_output_format("sed_doa", with_distance=True)


# ------------------------------------------------------------------------------------------------ stereo


STEREO = [
    Event(0, 0, 0, 30.0, 0.0, 1.25),
    Event(0, 2, 0, -89.0, 0.0, 2.5),
    Event(3, 4, 0, 0.0, 0.0, 0.75),
    Event(4, 1, 0, 150.0, 0.0, 3.0),  # behind: folded to 30
    Event(5, 3, 0, -120.0, 0.0, 4.125),  # behind: folded to -60
]


def test_stereo_accdoa_round_trip_keeps_folded_azimuth_and_distance() -> None:
    fmt = get_output_format("stereo_accdoa")
    target = fmt.encode(STEREO, N_FRAMES, NUM_CLASSES)["accdoa"]
    assert target.shape == (N_FRAMES, 3 * NUM_CLASSES) and fmt.csv_form == "dcase2025"
    decoded = fmt.decode({"accdoa": target}, NUM_CLASSES, PostProcessing())
    assert [(e.frame, e.class_index, e.source) for e in decoded] == [(e.frame, e.class_index, 0) for e in STEREO]
    for got, want in zip(decoded, STEREO, strict=True):
        assert abs(got.azimuth - float(fold_azimuth_front(want.azimuth))) < 1e-6
        assert abs(got.distance - want.distance) < 1e-6
        assert got.elevation == 0.0


def test_stereo_activity_is_the_xy_norm_only() -> None:
    # x = y = 0 with a distance of 2 m: silent (the 3-D accdoa format would read the distance as z)
    output = np.zeros((1, 3 * 2), dtype=np.float32)
    output[0, 2 * 2 + 1] = 2.0  # distance block, class 1
    output[0, 0] = 0.6  # class 0: x 0.6
    decoded = get_output_format("stereo_accdoa").decode({"accdoa": output}, 2, PostProcessing())
    assert [(e.class_index, e.azimuth, e.distance) for e in decoded] == [(0, 0.0, 0.0)]
    # an output pointing backwards decodes folded to the front
    output[0, :2] = [-0.7, 0.0]  # class 0: x -0.7 -> azimuth 180 -> folded 0
    output[0, 2] = 0.7  # class 0: y 0.7 -> with x -0.7 azimuth 135 -> folded 45
    (event,) = get_output_format("stereo_accdoa").decode({"accdoa": output}, 2, PostProcessing())
    assert event.azimuth == pytest.approx(45.0)


def test_stereo_mirror_transform_negates_azimuth_and_refuses_elevation_mixing() -> None:
    from seld_edge.foa_transforms import FOA_TRANSFORMS, STEREO_TRANSFORMS

    fmt = get_output_format("stereo_accdoa")
    target = fmt.encode(STEREO, N_FRAMES, NUM_CLASSES)
    mirror = STEREO_TRANSFORMS[1]
    mirrored = fmt.decode(fmt.transform(target, NUM_CLASSES, mirror), NUM_CLASSES, PostProcessing())
    original = fmt.decode(target, NUM_CLASSES, PostProcessing())
    assert [e.azimuth for e in mirrored] == pytest.approx([-e.azimuth for e in original], abs=1e-6)
    assert [e.distance for e in mirrored] == pytest.approx([e.distance for e in original])
    tilt = next(t for t in FOA_TRANSFORMS if t.matrix[2, 2] == -1 and np.array_equal(t.matrix[:2, :2], np.eye(2)))
    fmt.transform(target, NUM_CLASSES, tilt)  # z flip leaves the horizontal plane alone


# ------------------------------------------------------------------------------------------------ halves of a model


def test_sed_and_doa_halves_encode_sed_doas_targets_and_complete_each_other() -> None:
    sed_doa = get_output_format("sed_doa").encode(DISTINCT_CLASSES, N_FRAMES, NUM_CLASSES)
    sed = get_output_format("sed").encode(DISTINCT_CLASSES, N_FRAMES, NUM_CLASSES)
    doa = get_output_format("doa").encode(DISTINCT_CLASSES, N_FRAMES, NUM_CLASSES)
    np.testing.assert_array_equal(sed["sed"], sed_doa["sed"])
    np.testing.assert_array_equal(doa["doa"], sed_doa["doa"])
    for name, outputs in (("sed", sed), ("doa", doa)):
        fmt = get_output_format(name)
        assert not fmt.decodable
        with pytest.raises(SeldEdgeError, match="compose it"):
            fmt.decode(outputs, NUM_CLASSES, PostProcessing())
        full, completed = fmt.oracle(outputs, DISTINCT_CLASSES, NUM_CLASSES)
        assert full.name == "sed_doa"
        _assert_same_events(
            full.decode(completed, NUM_CLASSES, PostProcessing()), _renumbered(DISTINCT_CLASSES, keep_distance=False)
        )


def test_the_sed_half_is_scored_on_detection_with_reference_directions() -> None:
    # A SED network that misses class 2 and invents class 1 in frame 0: its oracle events are the reference's
    # directions on the detected classes only.
    sed = get_output_format("sed").encode(DISTINCT_CLASSES, N_FRAMES, NUM_CLASSES)["sed"].copy()
    sed[0, 2], sed[0, 1] = 0.0, 1.0
    full, completed = get_output_format("sed").oracle({"sed": sed}, DISTINCT_CLASSES, NUM_CLASSES)
    events = full.decode(completed, NUM_CLASSES, PostProcessing())
    assert [(e.frame, e.class_index) for e in events if e.frame == 0] == [(0, 0), (0, 1), (0, 4)]


# ------------------------------------------------------------------------------------------------ capacity


def test_each_format_counts_the_events_it_cannot_hold() -> None:
    four_of_a_class = [Event(0, 0, source, 90.0 * source, 0.0) for source in range(4)]
    four_classes = [Event(3, c, 0, 0.0, 0.0) for c in range(4)]
    for name, events, dropped in (
        ("multi_accdoa", four_of_a_class, 1),
        ("multi_accdoa", four_classes, 0),
        ("accdoa", four_of_a_class, 3),
        ("sed_doa", SAME_CLASS, 3),
        ("trackwise", four_classes, 1),
        ("trackwise", four_of_a_class, 1),
        ("trackwise", DISTINCT_CLASSES, 0),
    ):
        assert get_output_format(name).dropped(events) == dropped, name


def test_unknown_format_name_suggests_the_close_one() -> None:
    with pytest.raises(SeldEdgeError, match="did you mean multi_accdoa"):
        get_output_format("multi-accdoa")


# ------------------------------------------------------------------------------------------------ ADPIT layout


def test_adpit_slots_for_one_two_and_three_events_of_a_class() -> None:
    events = [
        Event(0, 0, 0, 0.0, 0.0, 1.0),  # alone -> A0
        Event(1, 1, 4, 90.0, 0.0, 2.0),  # two of class 1 -> B0 (lower source), B1
        Event(1, 1, 2, 0.0, 90.0, 3.0),
        Event(2, 2, 1, 180.0, 0.0, 1.5),  # three of class 2 -> C0, C1, C2 in source order
        Event(2, 2, 0, -90.0, 0.0, 2.5),
        Event(2, 2, 2, 0.0, -90.0, 3.5),
    ]
    labels = encode_adpit(events, 3, 3, with_distance=True)
    expected = np.zeros((3, 6, 5, 3), dtype=np.float32)
    expected[0, 0, :, 0] = [1, 1, 0, 0, 1.0]  # A0
    expected[1, 1, :, 1] = [1, 0, 0, 1, 3.0]  # B0: source 2, straight up
    expected[1, 2, :, 1] = [1, 0, 1, 0, 2.0]  # B1: source 4, left
    expected[2, 3, :, 2] = [1, 0, -1, 0, 2.5]  # C0: source 0, right
    expected[2, 4, :, 2] = [1, -1, 0, 0, 1.5]  # C1: source 1, behind
    expected[2, 5, :, 2] = [1, 0, 0, -1, 3.5]  # C2: source 2, down
    np.testing.assert_allclose(labels, expected, atol=1e-6)
    assert encode_adpit(events, 3, 3).shape == (3, 6, 4, 3)
    np.testing.assert_allclose(encode_adpit(events, 3, 3), expected[:, :, :4], atol=1e-6)


def test_adpit_keeps_the_first_three_of_more_than_three_same_class_events() -> None:
    events = [Event(0, 0, source, 90.0 * source, 0.0) for source in range(4)]
    labels = encode_adpit(events, 1, 1)
    np.testing.assert_array_equal(labels[0, :, 0, 0], [0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(labels[0, 3:, 1:, 0], polar_to_unit([0.0, 90.0, 180.0], [0.0, 0.0, 0.0]), atol=1e-6)


# ------------------------------------------------------------------------------------------------ unification


def _multi_accdoa_output(tracks: list[tuple[float, float, float]], num_classes: int = 2, cls: int = 1) -> np.ndarray:
    """One frame of multi-ACCDOA output with the given (azimuth, norm, distance) per track for one class."""
    out = np.zeros((1, 3, 4, num_classes), dtype=np.float32)
    for track, (azimuth, norm, distance) in enumerate(tracks):
        out[0, track, :3, cls] = norm * polar_to_unit(azimuth, 0.0)
        out[0, track, 3, cls] = distance
    return out.reshape(1, -1)


def test_unify_merges_tracks_10_degrees_apart_into_their_average() -> None:
    decoded = decode_multi_accdoa(_multi_accdoa_output([(0.0, 1.0, 1.0), (10.0, 1.0, 2.0)]), 2, unify_deg=15.0)
    assert len(decoded) == 1
    merged = decoded[0]
    assert (merged.frame, merged.class_index, merged.source) == (0, 1, 0)
    assert merged.azimuth == pytest.approx(5.0, abs=1e-4) and merged.elevation == pytest.approx(0.0, abs=1e-6)
    assert merged.distance == pytest.approx(1.5)


def test_unify_keeps_tracks_30_degrees_apart() -> None:
    decoded = decode_multi_accdoa(_multi_accdoa_output([(0.0, 1.0, 1.0), (30.0, 1.0, 2.0)]), 2, unify_deg=15.0)
    assert [(e.source, round(e.azimuth, 3), e.distance) for e in decoded] == [(0, 0.0, 1.0), (1, 30.0, 2.0)]


def test_unify_like_the_baseline_for_three_tracks() -> None:
    # one similar pair (tracks 1 and 2): that pair is averaged, track 0 stays; sources in track order
    decoded = decode_multi_accdoa(_multi_accdoa_output([(-90.0, 1.0, 1.0), (40.0, 1.0, 2.0), (50.0, 1.0, 3.0)]), 2)
    assert [(e.source, round(e.azimuth, 3), e.distance) for e in decoded] == [(0, -90.0, 1.0), (1, 45.0, 2.5)]
    # two similar pairs (0~1, 1~2, although 0 and 2 are 20 degrees apart): all three averaged
    decoded = decode_multi_accdoa(_multi_accdoa_output([(0.0, 1.0, 1.0), (10.0, 1.0, 2.0), (20.0, 1.0, 3.0)]), 2)
    assert [(e.source, round(e.azimuth, 3), e.distance) for e in decoded] == [(0, 10.0, 2.0)]


def test_activity_threshold_and_negative_distance() -> None:
    # track 1 (norm 0.4) is inactive and is not merged; a negative distance is clipped to 0
    decoded = decode_multi_accdoa(_multi_accdoa_output([(0.0, 0.6, -0.3), (5.0, 0.4, 2.0)]), 2)
    assert [(e.source, round(e.azimuth, 3), e.distance) for e in decoded] == [(0, 0.0, 0.0)]
    accdoa = np.zeros((1, 3 * 2), dtype=np.float32)
    accdoa[0, [0, 1]] = [0.4, 0.6]  # x of class 0 and class 1
    assert [e.class_index for e in decode_accdoa(accdoa, 2)] == [1]


def test_trackwise_decoder_uses_each_tracks_best_class() -> None:
    sed = np.array([[[0.7, 0.9], [0.2, 0.4], [0.6, 0.1]]])
    doa = np.array([[polar_to_unit(0.0, 0.0), polar_to_unit(90.0, 0.0), polar_to_unit(-90.0, 0.0)]])
    decoded = decode_trackwise(sed, doa, 2, threshold=0.5)
    assert [(e.class_index, e.source, round(e.azimuth, 3)) for e in decoded] == [(0, 0, -90.0), (1, 0, 0.0)]


def test_decoded_directions_follow_the_dcase_convention() -> None:
    sed = np.array([[1.0]])
    doa = np.array([[0.0, 1.0, 0.0]])  # y: left, azimuth +90
    (event,) = decode_sed_doa(sed, doa, 1)
    assert (event.azimuth, event.elevation) == (90.0, 0.0)


# ------------------------------------------------------------------------------------------------ errors


ENCODERS = [
    lambda events, n, c: encode_accdoa(events, n, c),
    lambda events, n, c: encode_adpit(events, n, c),
    lambda events, n, c: encode_trackwise(events, n, c),
    lambda events, n, c: encode_sed_doa(events, n, c),
]
ENCODER_IDS = ["accdoa", "adpit", "trackwise", "sed_doa"]


@pytest.mark.parametrize("encode", ENCODERS, ids=ENCODER_IDS)
def test_frame_past_the_end_is_a_user_error(encode) -> None:
    with pytest.raises(SeldEdgeError, match=r"frame 6 .*6 label frames"):
        encode([Event(6, 0, 0, 0.0, 0.0)], 6, NUM_CLASSES)


@pytest.mark.parametrize("encode", ENCODERS, ids=ENCODER_IDS)
def test_class_out_of_range_is_a_user_error(encode) -> None:
    with pytest.raises(SeldEdgeError, match=r"class 5, out of range for 5 classes"):
        encode([Event(0, 5, 0, 0.0, 0.0)], 6, NUM_CLASSES)


def test_distance_labels_need_distances() -> None:
    with pytest.raises(SeldEdgeError, match="no distance"):
        encode_adpit([Event(0, 0, 0, 0.0, 0.0)], 1, 1, with_distance=True)


def test_more_events_than_tracks_keeps_the_first_three() -> None:
    # Real STARSS frames can hold four events; like ADPIT, the track-wise format keeps three (by class).
    events = [Event(3, c, 0, 30.0 * c, 0.0) for c in range(4)]
    sed, doa = encode_trackwise(events, N_FRAMES, NUM_CLASSES)
    np.testing.assert_array_equal(sed[3].argmax(axis=-1), [0, 1, 2])
    np.testing.assert_allclose(doa[3], polar_to_unit([0.0, 30.0, 60.0], [0.0, 0.0, 0.0]), atol=1e-6)


def test_decoders_reject_outputs_for_another_class_count() -> None:
    with pytest.raises(SeldEdgeError, match="expected"):
        decode_accdoa(np.zeros((2, 3 * 13)), 12)
    with pytest.raises(SeldEdgeError, match=r"\(T, 117\)"):
        decode_multi_accdoa(np.zeros((2, 100)), 13)
    with pytest.raises(SeldEdgeError, match="track-wise"):
        decode_trackwise(np.zeros((2, 3, 13)), np.zeros((2, 2, 3)), 13)
    with pytest.raises(SeldEdgeError, match="SED output"):
        decode_sed_doa(np.zeros((2, 12)), np.zeros((2, 39)), 13)

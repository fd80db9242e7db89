"""Post-processing: sliding windows, overlap averaging, median filter, rotation TTA, thresholds, tuning."""

import json
from collections.abc import Callable
from itertools import pairwise

import numpy as np
import pytest

from seld_edge.errors import SeldEdgeError
from seld_edge.foa_transforms import FOA_TRANSFORMS
from seld_edge.formats import OutputFormat, get_output_format
from seld_edge.formats.accdoa import adpit_to_multi_accdoa
from seld_edge.formats.dcase_csv import Event
from seld_edge.metrics import evaluate
from seld_edge.postprocess import (
    PostProcessing,
    label_starts,
    median_filter_time,
    overlap_average,
    tune_thresholds,
    window_starts,
)

N_FRAMES = 4
NUM_CLASSES = 3
# Two events of class 1 in frame 0 (formats with one direction per class keep source 0), elevations
# off the horizon so reflections of z matter, distances so the distance blocks are exercised.
EVENTS = [
    Event(0, 0, 0, 30.0, 10.0, 1.5),
    Event(0, 1, 0, -120.0, -35.0, 2.0),
    Event(0, 1, 4, 75.0, 50.0, 3.0),
    Event(2, 2, 0, 170.0, 20.0, 0.5),
    Event(3, 0, 0, -45.0, -80.0, 4.0),
]

FORMATS: dict[str, OutputFormat] = {
    "accdoa": get_output_format("accdoa", with_distance=True),
    "multi_accdoa": get_output_format("multi_accdoa", with_distance=True),
    "trackwise": get_output_format("trackwise"),
    "sed_doa": get_output_format("sed_doa"),
}
ACCDOA = FORMATS["accdoa"]


def _perfect(name: str, events: list[Event]) -> dict[str, np.ndarray]:
    """Model outputs that exactly encode a list of events (what a perfect model would output)."""
    targets = FORMATS[name].encode(events, N_FRAMES, NUM_CLASSES)
    return {"accdoa": adpit_to_multi_accdoa(targets["adpit"])} if name == "multi_accdoa" else targets


PERFECT_OUTPUTS: dict[str, Callable[[list[Event]], dict[str, np.ndarray]]] = {
    name: (lambda ev, name=name: _perfect(name, ev)) for name in FORMATS
}


# ------------------------------------------------------------------------------------------------ windows


@pytest.mark.parametrize(
    ("n_frames", "window", "hop", "expected"),
    [
        (10, 4, 2, [0, 2, 4, 6]),
        (10, 4, 3, [0, 3, 6]),
        (11, 4, 4, [0, 4, 7]),  # the last window is pulled back to end at the clip's end
        (8, 4, 4, [0, 4]),
        (4, 4, 1, [0]),  # exactly one window
        (3, 4, 2, [0]),  # shorter than a window: one window, padded by the caller
        (250, 250, 125, [0]),
        (300, 250, 50, [0, 50]),
    ],
)
def test_window_starts_hand_cases(n_frames: int, window: int, hop: int, expected: list[int]) -> None:
    assert window_starts(n_frames, window, hop) == expected


@pytest.mark.parametrize(("window", "hop"), [(1, 1), (5, 2), (7, 7), (30, 10), (50, 45)])
@pytest.mark.parametrize("n_frames", [1, 6, 29, 30, 31, 97, 300])
def test_window_starts_cover_every_frame_once_the_last_at_the_end(n_frames: int, window: int, hop: int) -> None:
    starts = window_starts(n_frames, window, hop)
    covered = np.zeros(max(n_frames, window), dtype=int)
    for start in starts:
        covered[start : start + window] += 1
    assert covered[:n_frames].all()
    assert starts[0] == 0 and all(0 < b - a <= hop for a, b in pairwise(starts))
    assert starts[-1] + window == max(n_frames, window)


def test_window_starts_refuses_gaps_and_empty_sizes() -> None:
    with pytest.raises(ValueError, match="hop 5 is longer than the window 4"):
        window_starts(20, 4, 5)
    with pytest.raises(ValueError, match="positive"):
        window_starts(0, 4, 2)


def test_label_starts_divides_exactly_or_refuses() -> None:
    # 5 feature frames (20 ms) per 100 ms label frame: clip 300, window 250, hop 50 -> label starts 0, 10
    assert label_starts(window_starts(300, 250, 50), 5) == [0, 10]
    with pytest.raises(ValueError, match=r"\[3\] are not multiples of 5"):
        label_starts([0, 3], 5)


def test_overlap_average_of_constant_windows_is_the_constant() -> None:
    starts = window_starts(11, 4, 2)  # [0, 2, 4, 6, 7]
    outputs = [np.full((4, 3, 2), 0.75, dtype=np.float32) for _ in starts]
    averaged = overlap_average(outputs, starts, 11)
    assert averaged.shape == (11, 3, 2) and averaged.dtype == np.float32
    np.testing.assert_array_equal(averaged, 0.75)


def test_overlap_average_of_ramps_by_hand() -> None:
    ramps = [np.arange(4.0), 10 + np.arange(4.0), 20 + np.arange(4.0)]
    starts = window_starts(7, 4, 2)
    assert starts == [0, 2, 3]
    # frame 2: (2 + 10) / 2; frame 3: (3 + 11 + 20) / 3; frame 4: (12 + 21) / 2; frame 5: (13 + 22) / 2
    np.testing.assert_allclose(overlap_average(ramps, starts, 7), [0, 1, 6, 34 / 3, 16.5, 17.5, 23])
    # a clip shorter than the window: the padded frames' outputs are dropped
    np.testing.assert_allclose(overlap_average(ramps[:1], [0], 3), [0, 1, 2])


def test_overlap_average_refuses_uncovered_frames() -> None:
    with pytest.raises(ValueError, match="frame 2 of 7 without an output"):
        overlap_average([np.zeros(2), np.zeros(2)], [0, 5], 7)


# ------------------------------------------------------------------------------------------------ median filter


def test_median_filter_removes_a_spike_and_keeps_an_event() -> None:
    activity = np.zeros((20, 2))
    activity[5, 0] = 1.0  # one-frame spike of class 0
    activity[10:15, 1] = 1.0  # five-frame event of class 1
    filtered = median_filter_time(activity, 3)
    np.testing.assert_array_equal(filtered[:, 0], 0.0)
    np.testing.assert_array_equal(filtered[:, 1], activity[:, 1])
    assert median_filter_time(activity, 1) is activity
    with pytest.raises(ValueError, match="positive odd"):
        median_filter_time(activity, 4)


# ------------------------------------------------------------------------------------------------ rotation TTA


def _random_outputs(output_format: str, coords: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = 7
    if output_format == "accdoa":
        return {"accdoa": rng.uniform(-1, 1, (t, coords * NUM_CLASSES)).astype(np.float32)}
    if output_format == "multi_accdoa":
        return {"accdoa": rng.uniform(-1, 1, (t, 3 * coords * NUM_CLASSES)).astype(np.float32)}
    if output_format == "trackwise":
        return {"sed": rng.uniform(0, 1, (t, 3, NUM_CLASSES)), "doa": rng.uniform(-1, 1, (t, 3, 3))}
    return {"sed": rng.uniform(0, 1, (t, NUM_CLASSES)), "doa": rng.uniform(-1, 1, (t, 3 * NUM_CLASSES))}


@pytest.mark.parametrize("coords", [3, 4])
@pytest.mark.parametrize("output_format", list(FORMATS))
def test_rotate_then_inverse_is_identity(output_format: str, coords: int) -> None:
    outputs = _random_outputs(output_format, coords, np.random.default_rng(0))
    options = {"with_distance": coords == 4} if "accdoa" in output_format else {}
    fmt = get_output_format(output_format, **options)
    for transform in FOA_TRANSFORMS:
        rotated = fmt.transform(outputs, NUM_CLASSES, transform)
        back = fmt.transform(rotated, NUM_CLASSES, transform.inverse)
        assert back.keys() == outputs.keys()
        for name, array in outputs.items():
            assert back[name].dtype == array.dtype
            np.testing.assert_allclose(back[name], array, atol=1e-6)
        if "sed" in outputs:
            np.testing.assert_array_equal(rotated["sed"], outputs["sed"])


@pytest.mark.parametrize("output_format", list(FORMATS))
def test_rotating_outputs_equals_encoding_rotated_events(output_format: str) -> None:
    outputs = PERFECT_OUTPUTS[output_format](EVENTS)
    for transform in FOA_TRANSFORMS:
        rotated = FORMATS[output_format].transform(outputs, NUM_CLASSES, transform)
        expected = PERFECT_OUTPUTS[output_format](transform.events(EVENTS))
        for name in outputs:
            np.testing.assert_allclose(rotated[name], expected[name], atol=1e-5, err_msg=f"{transform.name} {name}")


def test_rotate_outputs_leaves_distance_and_activity_alone() -> None:
    (accdoa,) = PERFECT_OUTPUTS["multi_accdoa"](EVENTS).values()
    fmt = FORMATS["multi_accdoa"]
    rotated = fmt.transform({"accdoa": accdoa}, NUM_CLASSES, FOA_TRANSFORMS[5])["accdoa"]
    before, after = (a.reshape(N_FRAMES, 3, 4, NUM_CLASSES) for a in (accdoa, rotated))
    np.testing.assert_array_equal(after[:, :, 3], before[:, :, 3])
    np.testing.assert_allclose(np.linalg.norm(after[:, :, :3], axis=2), np.linalg.norm(before[:, :, :3], axis=2))
    with pytest.raises(SeldEdgeError, match=r"expected \(T, 36\)"):
        fmt.transform({"accdoa": accdoa[:, :-1]}, NUM_CLASSES, FOA_TRANSFORMS[5])


# ------------------------------------------------------------------------------------------------ decoding


def _outputs_at_activity(output_format: str, events: list[Event], activity: float) -> dict[str, np.ndarray]:
    """Perfect outputs for events with every activity (vector length or probability) scaled to activity."""
    outputs = PERFECT_OUTPUTS[output_format](events)
    if "sed" in outputs:
        return {**outputs, "sed": outputs["sed"] * activity}
    blocks = outputs["accdoa"].reshape(N_FRAMES, -1, 4, NUM_CLASSES).copy()
    blocks[:, :, :3] *= activity
    return {"accdoa": blocks.reshape(N_FRAMES, -1)}


@pytest.mark.parametrize("output_format", list(FORMATS))
def test_to_events_uses_per_class_thresholds(output_format: str) -> None:
    events = [Event(1, 0, 0, 30.0, 10.0, 1.0), Event(1, 1, 0, -60.0, 0.0, 2.0)]
    outputs = _outputs_at_activity(output_format, events, 0.6)

    def classes(thresholds: float | tuple[float, ...]) -> list[int]:
        decoded = PostProcessing(thresholds=thresholds).to_events(outputs, FORMATS[output_format], NUM_CLASSES)
        return [e.class_index for e in decoded]

    assert classes((0.5, 0.7, 0.5)) == [0]
    assert classes((0.7, 0.5, 0.5)) == [1]
    assert classes(0.5) == [0, 1]
    assert classes(0.7) == []
    with pytest.raises(SeldEdgeError, match="2 per-class thresholds for 3 classes"):
        classes((0.5, 0.5))


def test_to_events_median_filters_before_thresholds() -> None:
    spike = PERFECT_OUTPUTS["sed_doa"]([Event(2, 0, 0, 0.0, 0.0)])
    assert len(PostProcessing().to_events(spike, FORMATS["sed_doa"], NUM_CLASSES)) == 1
    assert PostProcessing(median_size=3).to_events(spike, FORMATS["sed_doa"], NUM_CLASSES) == []


# ------------------------------------------------------------------------------------------------ tuning


def _tuning_clip() -> tuple[dict[str, np.ndarray], list[Event]]:
    """60 frames, ACCDOA with distance. Class 0: true events at activity 0.9 and false alarms at 0.55
    (needs a high threshold); class 1: true events at 0.35 (needs a low one); class 2: at 0.8 (fine at 0.5)."""
    n_frames, reference = 60, []
    blocks = np.zeros((n_frames, 4, NUM_CLASSES), dtype=np.float32)

    def put(frames: range, class_index: int, azimuth: float, activity: float, true: bool) -> None:
        blocks[list(frames), :3, class_index] = activity * np.array(Event(0, 0, 0, azimuth).unit_vector())
        blocks[list(frames), 3, class_index] = 2.0
        if true:
            reference.extend(Event(f, class_index, 0, azimuth, 0.0, 2.0) for f in frames)

    put(range(0, 10), 0, 20.0, 0.9, True)
    put(range(30, 40), 0, 20.0, 0.9, True)
    put(range(10, 20), 0, -40.0, 0.55, False)
    put(range(50, 56), 0, 60.0, 0.55, False)
    put(range(20, 30), 1, 80.0, 0.35, True)
    put(range(40, 50), 1, -70.0, 0.35, True)
    put(range(0, 60), 2, 0.0, 0.8, True)
    return {"accdoa": blocks.reshape(n_frames, -1)}, reference


@pytest.mark.parametrize(("metric", "key", "sign"), [("dcase2023", "SELD", -1), ("dcase2025", "F", 1)])
def test_tune_thresholds_finds_high_and_low_thresholds(metric: str, key: str, sign: int) -> None:
    clips = [_tuning_clip()]
    base = PostProcessing(median_size=3, unify_deg=20.0)
    tuned = tune_thresholds(clips, ACCDOA, NUM_CLASSES, metric=metric, base=base)
    assert isinstance(tuned.thresholds, tuple)
    low_class, high_class, unchanged = tuned.thresholds[1], tuned.thresholds[0], tuned.thresholds[2]
    assert 0.55 <= high_class < 0.9
    assert low_class < 0.35
    assert unchanged == 0.5  # any value up to 0.75 scores the same: the current one is kept
    assert (tuned.median_size, tuned.unify_deg) == (3, 20.0)

    def score(settings: PostProcessing) -> float:
        pairs = [(ref, settings.to_events(outputs, ACCDOA, NUM_CLASSES)) for outputs, ref in clips]
        return sign * evaluate(pairs, metric, NUM_CLASSES)[key]

    assert score(tuned) > score(base)
    assert evaluate([(clips[0][1], tuned.to_events(clips[0][0], ACCDOA, NUM_CLASSES))], metric, NUM_CLASSES)[
        "F"
    ] == pytest.approx(1.0)


def test_tune_thresholds_keeps_a_base_that_cannot_be_improved() -> None:
    outputs, reference = _tuning_clip()
    best = PostProcessing(thresholds=(0.7, 0.3, 0.5))
    assert tune_thresholds([(outputs, reference)], ACCDOA, NUM_CLASSES, base=best) == best


# ------------------------------------------------------------------------------------------------ settings


def test_json_and_dict_round_trips() -> None:
    for settings in (PostProcessing(), PostProcessing(thresholds=(0.3, 0.55, 0.7), median_size=5, unify_deg=20.0)):
        text = settings.to_json()
        assert json.loads(text)["type"] == "PostProcessing"
        assert PostProcessing.from_json(text) == settings
        assert PostProcessing.from_dict(settings.to_dict()) == settings
    assert PostProcessing.from_dict({}) == PostProcessing()  # a config without a postprocess section
    assert PostProcessing.from_dict({"median_size": 3}).median_size == 3
    assert PostProcessing(thresholds=[0.3, 0.4]).thresholds == (0.3, 0.4)  # lists (from JSON) become tuples


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"thresholds": 0.5}', "no 'type'"),
        (
            '{"type": "PostProcessing", "threshold": 0.5}',
            "unknown post-processing key 'threshold'; did you mean thresholds",
        ),
        ('{"type": "PostProcessing", "median_size": 4}', "positive odd"),
        ('{"type": "PostProcessing", "thresholds": []}', "non-empty"),
        ('{"type": "PostProcessing", "thresholds": "high"}', "invalid post-processing settings"),
    ],
)
def test_from_json_errors_are_user_errors(text: str, message: str) -> None:
    with pytest.raises(SeldEdgeError, match=message):
        PostProcessing.from_json(text)

"""Label encoders and decoders for every output format of the model zoo, in numpy only.

Training turns metadata events into targets with the encoders; training, the runtime and the CLI turn
model outputs back into events with the decoders. Keeping both directions here, torch-free, is what
makes a PyTorch prediction and an ONNX/TensorRT run of the same model write the same CSV.

Formats, by the name a model declares (see :data:`OUTPUT_FORMATS`); T label frames, C classes:

``accdoa``
    One activity-coupled direction per class (Shimada et al.): output (T, 3*C) ordered
    [coordinate][class] (an x block, a y block, a z block), or (T, 4*C) with a distance block in
    metres. The vector length is the activity, so a class is active when the norm exceeds 0.5.
``multi_accdoa``
    The DCASE 2023/2024 SELDnet baseline: 3 tracks of ACCDOA, output (T, 3*3*C) or (T, 3*4*C) ordered
    [track][coordinate][class]. Training targets are the ADPIT labels (T, 6, 4|5, C): slots
    A0, B0, B1, C0, C1, C2 x (activity, x, y, z[, distance]) x classes, as built by the baseline's
    ``cls_feature_class.get_adpit_labels_for_file``; decoding reproduces the baseline's
    ``determine_similar_location`` merging of same-class tracks (``train_seldnet.test_epoch``).
``trackwise``
    EINV2 / MFF-EINV2: K = 3 tracks, each with a one-hot class (T, K, C) and a unit direction (T, K, 3).
    Decoding follows EIN-SELD: each track carries its most probable class only.
``sed_doa``
    GLFER-Net, FFMamba: class activity (T, C) and one direction per class (T, 3*C) ordered
    [coordinate][class].

Formats that hold one direction per class (``accdoa``, ``sed_doa``) cannot represent two events of
one class in a frame: their encoders keep the event with the lowest source id. Decoders number the
sources of each frame and class 0, 1, 2 (models do not track identities) and return events sorted by
(frame, class, source). Distances are metres throughout.

Every decoder takes an activity threshold that is either one number or one per class
(:data:`Thresholds`): Stereo-RCnet and M2M-AST tune a threshold per class on validation data. The
events of a class depend on that class's threshold only, which is what lets
:func:`seld_edge.postprocess.tune_thresholds` decode once per threshold value and mix classes.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby

import numpy as np

from seld_edge.errors import SeldEdgeError, unknown_name
from seld_edge.formats.dcase_csv import Event
from seld_edge.geometry import angular_distance_deg, polar_to_unit, unit_to_polar

ACTIVITY_THRESHOLD = 0.5
UNIFY_DEG = 15.0
NUM_TRACKS = 3
ADPIT_SLOTS = ("A0", "B0", "B1", "C0", "C1", "C2")

# ADPIT slots filled by 1, 2 and 3 (or more) same-class events of a frame.
_ADPIT_SLOTS_BY_COUNT = {1: (0,), 2: (1, 2), 3: (3, 4, 5)}
# Track pairs compared by the baseline's unification: 0~1, 1~2 and 2~0 (stored low index first).
_TRACK_PAIRS = ((0, 1), (1, 2), (0, 2))

Thresholds = float | Sequence[float] | np.ndarray
"""An activity threshold for every class, or a sequence of one per class."""


# --------------------------------------------------------------------------------------------------
# shared helpers


def _checked_events(
    events: Iterable[Event], n_frames: int, num_classes: int, with_distance: bool = False
) -> list[Event]:
    """Validate events against the clip and class list; sorted by (frame, class, source).

    A frame past the end means the metadata and the audio disagree (the data loader reports it with
    the file name), so this is a user error rather than something to drop silently as the baseline does.
    """
    checked = sorted(events, key=lambda e: (e.frame, e.class_index, e.source))
    for e in checked:
        if not 0 <= e.frame < n_frames:
            raise SeldEdgeError(
                f"event at frame {e.frame} (class {e.class_index}) lies outside the clip, "
                f"which has {n_frames} label frames (0..{n_frames - 1})"
            )
        if not 0 <= e.class_index < num_classes:
            raise SeldEdgeError(
                f"event at frame {e.frame} has class {e.class_index}, out of range for {num_classes} classes"
            )
        if with_distance and e.distance is None:
            raise SeldEdgeError(
                f"event at frame {e.frame} (class {e.class_index}) has no distance, but the labels need one"
            )
    return checked


def _lowest_source_per_class(events: list[Event]) -> list[Event]:
    """From events sorted by (frame, class, source), the first of each (frame, class)."""
    return [next(group) for _, group in groupby(events, key=lambda e: (e.frame, e.class_index))]


def _directions(events: Sequence[Event]) -> np.ndarray:
    """Unit vectors (N, 3) of the events."""
    return polar_to_unit([e.azimuth for e in events], [e.elevation for e in events]).reshape(len(events), 3)


def _output_coords(array: np.ndarray, num_classes: int, per_class_widths: Mapping[int, int], what: str) -> int:
    """Which of the allowed layouts a 2-D model output has; a mismatch is a model/class-list error."""
    if array.ndim == 2:
        for width, coords in per_class_widths.items():
            if array.shape[1] == width * num_classes:
                return coords
    allowed = " or ".join(f"(T, {w * num_classes})" for w in per_class_widths)
    raise SeldEdgeError(f"{what} output has shape {array.shape}, expected {allowed} for {num_classes} classes")


def _check_shape(array: np.ndarray, expected: tuple[int | None, ...], what: str) -> None:
    """Raise SeldEdgeError unless array matches expected (None = any size)."""
    if array.ndim != len(expected) or any(e is not None and s != e for s, e in zip(array.shape, expected, strict=True)):
        shown = tuple("T" if e is None else e for e in expected)
        raise SeldEdgeError(f"{what} has shape {array.shape}, expected {shown}")


def class_thresholds(threshold: Thresholds, num_classes: int) -> np.ndarray:
    """Thresholds as a (C,) array that broadcasts over a class axis.

    A length mismatch means the settings were tuned for another class list (say, a model file's
    metadata against a different class list), which is a user error.
    """
    values = np.asarray(threshold, dtype=np.float64)
    if values.ndim == 0:
        return np.full(num_classes, float(values))
    if values.shape != (num_classes,):
        raise SeldEdgeError(f"got {values.size} per-class thresholds for {num_classes} classes")
    return values


def _event(frame: int, class_index: int, source: int, vector: np.ndarray, distance: float | None) -> Event:
    azimuth, elevation = unit_to_polar(vector)
    return Event(
        int(frame),
        int(class_index),
        int(source),
        float(azimuth),
        float(elevation),
        None if distance is None else float(distance),
    )


# --------------------------------------------------------------------------------------------------
# ACCDOA (single track)


def encode_accdoa(
    events: Iterable[Event], n_frames: int, num_classes: int, *, with_distance: bool = False
) -> np.ndarray:
    """ACCDOA target (T, 3*C), or (T, 4*C) with distance, ordered [coordinate][class].

    Each active class holds its unit direction, so the vector norm is the activity (1 or 0); the
    distance block holds metres where active and 0 elsewhere. Same-class overlaps keep the lowest
    source id, the only one this format can represent.
    """
    kept = _lowest_source_per_class(_checked_events(events, n_frames, num_classes, with_distance))
    target = np.zeros((n_frames, 4 if with_distance else 3, num_classes), dtype=np.float32)
    if kept:
        frames = np.array([e.frame for e in kept])
        classes = np.array([e.class_index for e in kept])
        target[frames, :3, classes] = _directions(kept)
        if with_distance:
            target[frames, 3, classes] = [e.distance for e in kept]
    return target.reshape(n_frames, -1)


def decode_accdoa(output: np.ndarray, num_classes: int, *, threshold: Thresholds = ACTIVITY_THRESHOLD) -> list[Event]:
    """Events from an ACCDOA output (T, 3*C) or (T, 4*C): a class is active when its norm > its threshold.

    Negative distances (a regression head can overshoot) are clipped to 0, as the 2024 baseline does.
    """
    output = np.asarray(output, dtype=np.float64)
    coords = _output_coords(output, num_classes, {3: 3, 4: 4}, "ACCDOA")
    blocks = output.reshape(output.shape[0], coords, num_classes)
    active = np.linalg.norm(blocks[:, :3], axis=1) > class_thresholds(threshold, num_classes)
    events = []
    for frame, class_index in np.argwhere(active):
        distance = max(blocks[frame, 3, class_index], 0.0) if coords == 4 else None
        events.append(_event(frame, class_index, 0, blocks[frame, :3, class_index], distance))
    return events


# --------------------------------------------------------------------------------------------------
# multi-ACCDOA with ADPIT targets


def encode_adpit(
    events: Iterable[Event], n_frames: int, num_classes: int, *, with_distance: bool = False
) -> np.ndarray:
    """ADPIT target (T, 6, 4, C), or (T, 6, 5, C) with distance, for multi-ACCDOA training.

    Slots A0, B0, B1, C0, C1, C2; channels activity, x, y, z[, distance in metres]; values as in the
    baseline's get_adpit_labels_for_file: activity 1 and a unit direction (not yet multiplied). A class
    with one event in a frame fills A0, two fill B0 and B1, three fill C0, C1, C2. Beyond three only the
    first three are kept, as in the baseline. Same-class events go in source-id order (the baseline
    keeps file order; the ADPIT loss tries every order within a group, so this changes no loss value).
    """
    checked = _checked_events(events, n_frames, num_classes, with_distance)
    labels = np.zeros((n_frames, len(ADPIT_SLOTS), 5 if with_distance else 4, num_classes), dtype=np.float32)
    for (frame, class_index), group in groupby(checked, key=lambda e: (e.frame, e.class_index)):
        same_class = list(group)[:3]
        slots = list(_ADPIT_SLOTS_BY_COUNT[len(same_class)])
        labels[frame, slots, 0, class_index] = 1.0
        labels[frame, slots, 1:4, class_index] = _directions(same_class)
        if with_distance:
            labels[frame, slots, 4, class_index] = [e.distance for e in same_class]
    return labels


def adpit_to_multi_accdoa(labels: np.ndarray) -> np.ndarray:
    """The multi-ACCDOA output (T, 3*3*C) or (T, 3*4*C) that scores zero ADPIT loss on these labels.

    Uses the first permutation of each slot group in the baseline's MSELoss_ADPIT: A0A0A0, B0B0B1,
    C0C1C2, each slot scaled by its activity. Decoding it gives back the labelled events (duplicated
    tracks merge), so it turns ADPIT labels into reference events and serves as a perfect prediction.
    """
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim != 4 or labels.shape[1] != len(ADPIT_SLOTS) or labels.shape[2] not in (4, 5):
        raise SeldEdgeError(f"ADPIT labels have shape {labels.shape}, expected (T, 6, 4 or 5, C)")
    vectors = labels[:, :, :1] * labels[:, :, 1:]  # (T, 6, coords, C)
    a0, b0, b1, c0, c1, c2 = (vectors[:, slot] for slot in range(len(ADPIT_SLOTS)))
    tracks = np.stack([a0 + b0 + c0, a0 + b0 + c1, a0 + b1 + c2], axis=1)  # (T, 3, coords, C)
    return tracks.reshape(labels.shape[0], -1)


def _unified_tracks(active: np.ndarray, similar: np.ndarray) -> list[tuple[int, ...]]:
    """Groups of tracks that make one event each, as in the baseline's test_epoch.

    ``active`` (3,) marks active tracks; ``similar`` (3,) marks the pairs of _TRACK_PAIRS that are both
    active and closer than the unify threshold. Two or more similar pairs merge all three tracks; one
    merges that pair and keeps the third if active; none keeps every active track.
    """
    n_similar = int(similar.sum())
    if n_similar >= 2:
        return [(0, 1, 2)]
    if n_similar == 1:
        pair = _TRACK_PAIRS[int(np.argmax(similar))]
        (rest,) = {0, 1, 2} - set(pair)
        return sorted([pair, *([(rest,)] if active[rest] else [])])
    return [(track,) for track in range(NUM_TRACKS) if active[track]]


def decode_multi_accdoa(
    output: np.ndarray,
    num_classes: int,
    *,
    threshold: Thresholds = ACTIVITY_THRESHOLD,
    unify_deg: float = UNIFY_DEG,
) -> list[Event]:
    """Events from a multi-ACCDOA output (T, 3*3*C) or (T, 3*4*C) ordered [track][coordinate][class].

    A track is active when its xyz norm > its class's threshold. Active same-class tracks closer than
    unify_deg are merged by averaging their vectors (and distances), because ADPIT trains a single
    source to appear on several tracks. Sources of a frame and class are numbered 0, 1, 2 in track order (a merged
    group sits at its lowest track). Negative distances are clipped to 0, as in the 2024 baseline.
    """
    output = np.asarray(output, dtype=np.float64)
    coords = _output_coords(output, num_classes, {3 * NUM_TRACKS: 3, 4 * NUM_TRACKS: 4}, "multi-ACCDOA")
    tracks = np.moveaxis(output.reshape(output.shape[0], NUM_TRACKS, coords, num_classes), 2, -1)  # (T, 3, C, coords)
    vectors = tracks[..., :3]
    distances = np.maximum(tracks[..., 3], 0.0) if coords == 4 else None
    active = np.linalg.norm(vectors, axis=-1) > class_thresholds(threshold, num_classes)  # (T, 3, C)
    similar = np.stack(
        [
            active[:, i] & active[:, j] & (angular_distance_deg(vectors[:, i], vectors[:, j]) < unify_deg)
            for i, j in _TRACK_PAIRS
        ],
        axis=1,
    )  # (T, 3 pairs, C)
    events = []
    for frame, class_index in np.argwhere(active.any(axis=1)):
        groups = _unified_tracks(active[frame, :, class_index], similar[frame, :, class_index])
        for source, group in enumerate(groups):
            members = list(group)
            vector = vectors[frame, members, class_index].mean(axis=0)
            distance = None if distances is None else distances[frame, members, class_index].mean()
            events.append(_event(frame, class_index, source, vector, distance))
    return events


# --------------------------------------------------------------------------------------------------
# track-wise (EINV2)


def encode_trackwise(
    events: Iterable[Event], n_frames: int, num_classes: int, *, num_tracks: int = NUM_TRACKS
) -> tuple[np.ndarray, np.ndarray]:
    """Track-wise targets: sed (T, K, C) one-hot per track and doa (T, K, 3) unit vectors.

    The events of a frame fill tracks 0, 1, ... in (class, source) order; empty tracks are all zero.
    The order is arbitrary but fixed: the track-wise PIT loss is taken over all track permutations of
    each frame, so any order trains the same. More events than tracks cannot be represented.
    """
    checked = _checked_events(events, n_frames, num_classes)
    sed = np.zeros((n_frames, num_tracks, num_classes), dtype=np.float32)
    doa = np.zeros((n_frames, num_tracks, 3), dtype=np.float32)
    for frame, group in groupby(checked, key=lambda e: e.frame):
        in_frame = list(group)
        if len(in_frame) > num_tracks:
            raise SeldEdgeError(
                f"frame {frame} has {len(in_frame)} events, more than the {num_tracks} tracks of the track-wise format"
            )
        track_ids = np.arange(len(in_frame))
        sed[frame, track_ids, [e.class_index for e in in_frame]] = 1.0
        doa[frame, track_ids] = _directions(in_frame)
    return sed, doa


def decode_trackwise(
    sed: np.ndarray, doa: np.ndarray, num_classes: int, *, threshold: Thresholds = ACTIVITY_THRESHOLD
) -> list[Event]:
    """Events from track-wise outputs sed (T, K, C) probabilities and doa (T, K, 3).

    As in EIN-SELD's inference, each track carries only its most probable class, active when that
    probability > that class's threshold. Same-class tracks of a frame become sources 0, 1, ... in
    track order.
    """
    sed = np.asarray(sed, dtype=np.float64)
    doa = np.asarray(doa, dtype=np.float64)
    _check_shape(sed, (None, None, num_classes), "track-wise SED output")
    _check_shape(doa, (sed.shape[0], sed.shape[1], 3), "track-wise DOA output")
    best = sed.argmax(axis=-1)  # (T, K)
    best_probability = np.take_along_axis(sed, best[..., None], axis=-1)[..., 0]
    active = best_probability > class_thresholds(threshold, num_classes)[best]
    found = sorted((frame, best[frame, track], track) for frame, track in np.argwhere(active))
    events = []
    for (frame, class_index), group in groupby(found, key=lambda item: item[:2]):
        for source, (_, _, track) in enumerate(group):
            events.append(_event(frame, class_index, source, doa[frame, track], None))
    return events


# --------------------------------------------------------------------------------------------------
# SED + DOA per class (GLFER-Net, FFMamba)


def encode_sed_doa(events: Iterable[Event], n_frames: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets sed (T, C) in {0, 1} and doa (T, 3*C) unit vectors ordered [coordinate][class].

    One direction per class: of same-class events in a frame the lowest source id is kept. Inactive
    classes have a zero direction (the DOA loss of these models is masked by activity).
    """
    kept = _lowest_source_per_class(_checked_events(events, n_frames, num_classes))
    sed = np.zeros((n_frames, num_classes), dtype=np.float32)
    doa = np.zeros((n_frames, 3, num_classes), dtype=np.float32)
    if kept:
        frames = np.array([e.frame for e in kept])
        classes = np.array([e.class_index for e in kept])
        sed[frames, classes] = 1.0
        doa[frames, :, classes] = _directions(kept)
    return sed, doa.reshape(n_frames, -1)


def decode_sed_doa(
    sed: np.ndarray, doa: np.ndarray, num_classes: int, *, threshold: Thresholds = ACTIVITY_THRESHOLD
) -> list[Event]:
    """Events from sed (T, C) probabilities and doa (T, 3*C): a class is active when sed > its threshold.

    The threshold is a parameter because these models tune it (GLFER-Net uses 0.3, M2M-AST one per class).
    """
    sed = np.asarray(sed, dtype=np.float64)
    doa = np.asarray(doa, dtype=np.float64)
    _check_shape(sed, (None, num_classes), "SED output")
    _check_shape(doa, (sed.shape[0], 3 * num_classes), "DOA output")
    vectors = doa.reshape(sed.shape[0], 3, num_classes)
    return [
        _event(frame, class_index, 0, vectors[frame, :, class_index], None)
        for frame, class_index in np.argwhere(sed > class_thresholds(threshold, num_classes))
    ]


# --------------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class OutputFormat:
    """An output format by name, so models, export and the runtime need no per-format code.

    ``outputs`` names the arrays the model returns (in order) and ``targets`` the arrays the encoder
    builds; both methods work on name -> array mappings.
    """

    name: str
    outputs: tuple[str, ...]
    targets: tuple[str, ...]
    encoder: Callable[..., np.ndarray | tuple[np.ndarray, ...]]
    decoder: Callable[..., list[Event]]

    def encode(self, events: Iterable[Event], n_frames: int, num_classes: int, **options) -> dict[str, np.ndarray]:
        """Training targets by name; options go to the encoder (with_distance, num_tracks)."""
        arrays = self.encoder(events, n_frames, num_classes, **options)
        if isinstance(arrays, np.ndarray):
            arrays = (arrays,)
        return dict(zip(self.targets, arrays, strict=True))

    def decode(self, outputs: Mapping[str, np.ndarray], num_classes: int, **options) -> list[Event]:
        """Events from model outputs by name; options go to the decoder (threshold, unify_deg)."""
        missing = [name for name in self.outputs if name not in outputs]
        if missing:
            raise SeldEdgeError(f"the {self.name} format needs model outputs {list(self.outputs)}, missing {missing}")
        return self.decoder(*(outputs[name] for name in self.outputs), num_classes, **options)


OUTPUT_FORMATS: dict[str, OutputFormat] = {
    "accdoa": OutputFormat("accdoa", ("accdoa",), ("accdoa",), encode_accdoa, decode_accdoa),
    "multi_accdoa": OutputFormat("multi_accdoa", ("accdoa",), ("adpit",), encode_adpit, decode_multi_accdoa),
    "trackwise": OutputFormat("trackwise", ("sed", "doa"), ("sed", "doa"), encode_trackwise, decode_trackwise),
    "sed_doa": OutputFormat("sed_doa", ("sed", "doa"), ("sed", "doa"), encode_sed_doa, decode_sed_doa),
}


def get_output_format(name: str) -> OutputFormat:
    """The format called name; an unknown name (e.g. from a model file's metadata) is a user error."""
    if name not in OUTPUT_FORMATS:
        raise unknown_name("output format", name, OUTPUT_FORMATS)
    return OUTPUT_FORMATS[name]

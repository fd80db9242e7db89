"""ACCDOA formats: the vector of a class is its direction and its length is its activity.

``accdoa``
    One activity-coupled direction per class (Shimada et al. 2021): output (T, 3*C) ordered
    [coordinate][class] (an x block, a y block, a z block), or (T, 4*C) with a distance block in
    metres. A class is active when its vector norm exceeds its threshold.
``multi_accdoa``
    The DCASE 2023/2024 SELDnet baseline: 3 tracks of ACCDOA, output (T, 3*3*C) or (T, 3*4*C) ordered
    [track][coordinate][class]. Training targets are the ADPIT labels (T, 6, 4|5, C): slots
    A0, B0, B1, C0, C1, C2 x (activity, x, y, z[, distance]) x classes, as built by the baseline's
    ``cls_feature_class.get_adpit_labels_for_file``; decoding reproduces the baseline's
    ``determine_similar_location`` merging of same-class tracks (``train_seldnet.test_epoch``).
``stereo_accdoa``
    DCASE 2025 stereo (Stereo-RCnet, the 2025 audio baseline's layout): per class a 2-D vector (x, y)
    and a distance, output (T, 3*C) ordered [x block, y block, distance block]. Activity is the (x, y)
    norm alone, so a distance never makes a silent class active. A stereo pair cannot tell front from
    back, so directions are folded into the front half-plane (azimuth in [-90, 90]) both ways.

Formats with one vector per class cannot hold two events of one class in a frame: their encoders keep
the event with the lowest source id. Negative distances (a regression head can overshoot) decode as 0,
as in the 2024 baseline.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import groupby
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from seld_edge.errors import SeldEdgeError
from seld_edge.formats.dcase_csv import Event
from seld_edge.formats.output_format import (
    LossView,
    OutputFormat,
    checked_events,
    class_thresholds,
    directions,
    lowest_source_per_class,
    make_event,
    register_format,
    transformed_class_blocks,
)
from seld_edge.geometry import angular_distance_deg, fold_azimuth_front

if TYPE_CHECKING:
    from seld_edge.foa_transforms import FoaTransform
    from seld_edge.postprocess import PostProcessing

NUM_TRACKS = 3
ADPIT_SLOTS = ("A0", "B0", "B1", "C0", "C1", "C2")
# ADPIT slots filled by 1, 2 and 3 same-class events of a frame.
_ADPIT_SLOTS_BY_COUNT = {1: (0,), 2: (1, 2), 3: (3, 4, 5)}
# Track pairs compared by the baseline's unification: 0~1, 1~2 and 2~0 (stored low index first).
_TRACK_PAIRS = ((0, 1), (1, 2), (0, 2))


def _class_blocks(output: np.ndarray, blocks: int, num_classes: int, what: str) -> np.ndarray:
    """A (T, blocks*C) output as (T, blocks, C); a mismatch is a model/class-list error."""
    if output.ndim != 2 or output.shape[1] != blocks * num_classes:
        raise SeldEdgeError(
            f"{what} output has shape {output.shape}, expected (T, {blocks * num_classes}) for {num_classes} classes"
        )
    return output.reshape(output.shape[0], blocks, num_classes)


def _unit_active(target_vectors: Any) -> Any:
    """(B, T, 1, C) activity of ACCDOA targets: their vectors are unit length where active, zero elsewhere."""
    return (target_vectors**2).sum(axis=-2, keepdims=True) > 0


@register_format
@dataclass(frozen=True)
class Accdoa(OutputFormat):
    """``accdoa``: (T, 3*C), or (T, 4*C) with a distance block; see the module docstring."""

    with_distance: bool = False

    name: ClassVar[str] = "accdoa"
    outputs: ClassVar[tuple[str, ...]] = ("accdoa",)
    targets: ClassVar[tuple[str, ...]] = ("accdoa",)
    default_loss: ClassVar = {"mse": 1.0}

    @property
    def coords(self) -> int:
        return 4 if self.with_distance else 3

    def encode(self, events: Iterable[Event], n_frames: int, num_classes: int) -> dict[str, np.ndarray]:
        """Each active class holds its unit direction (norm 1 = active), the distance block metres."""
        kept = lowest_source_per_class(checked_events(events, n_frames, num_classes, self.with_distance))
        target = np.zeros((n_frames, self.coords, num_classes), dtype=np.float32)
        if kept:
            frames = np.array([e.frame for e in kept])
            classes = np.array([e.class_index for e in kept])
            target[frames, :3, classes] = directions(kept)
            if self.with_distance:
                target[frames, 3, classes] = [e.distance for e in kept]
        return {"accdoa": target.reshape(n_frames, -1)}

    def decode(self, outputs: Mapping[str, np.ndarray], num_classes: int, settings: "PostProcessing") -> list[Event]:
        (output,) = self.outputs_of(outputs)
        blocks = _class_blocks(output, self.coords, num_classes, "ACCDOA")
        active = np.linalg.norm(blocks[:, :3], axis=1) > class_thresholds(settings.thresholds, num_classes)
        return [
            make_event(frame, c, 0, blocks[frame, :3, c], max(blocks[frame, 3, c], 0.0) if self.with_distance else None)
            for frame, c in np.argwhere(active)
        ]

    def transform(self, outputs: Mapping[str, np.ndarray], num_classes: int, transform: "FoaTransform") -> dict:
        array = np.asarray(outputs["accdoa"])
        _class_blocks(array, self.coords, num_classes, "ACCDOA")
        return {**outputs, "accdoa": transformed_class_blocks(array, self.coords, num_classes, transform.vectors)}

    def loss_view(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> LossView:
        output, target = outputs["accdoa"], targets["accdoa"]
        output = output.reshape(*output.shape[:-1], self.coords, -1)
        target = target.reshape(*target.shape[:-1], self.coords, -1)
        active = _unit_active(target[..., :3, :])
        distance = (output[..., 3, :], target[..., 3, :]) if self.with_distance else None
        return LossView(vectors=(output[..., :3, :], target[..., :3, :]), active=active, distance=distance)


@register_format
@dataclass(frozen=True)
class MultiAccdoa(OutputFormat):
    """``multi_accdoa`` with ADPIT targets; see the module docstring."""

    with_distance: bool = False

    name: ClassVar[str] = "multi_accdoa"
    outputs: ClassVar[tuple[str, ...]] = ("accdoa",)
    targets: ClassVar[tuple[str, ...]] = ("adpit",)
    default_loss: ClassVar = {"adpit_mse": 1.0}

    @property
    def coords(self) -> int:
        return 4 if self.with_distance else 3

    def encode(self, events: Iterable[Event], n_frames: int, num_classes: int) -> dict[str, np.ndarray]:
        """ADPIT target (T, 6, 4|5, C): activity 1 and a unit direction (not yet multiplied), as the baseline.

        A class with one event in a frame fills A0, two fill B0 and B1, three fill C0, C1, C2. Beyond
        three only the first three are kept, as in the baseline. Same-class events go in source-id order
        (the baseline keeps file order; the ADPIT loss tries every order within a group, so this changes
        no loss value).
        """
        checked = checked_events(events, n_frames, num_classes, self.with_distance)
        labels = np.zeros((n_frames, len(ADPIT_SLOTS), self.coords + 1, num_classes), dtype=np.float32)
        for (frame, class_index), group in groupby(checked, key=lambda e: (e.frame, e.class_index)):
            same_class = list(group)[:NUM_TRACKS]
            slots = list(_ADPIT_SLOTS_BY_COUNT[len(same_class)])
            labels[frame, slots, 0, class_index] = 1.0
            labels[frame, slots, 1:4, class_index] = directions(same_class)
            if self.with_distance:
                labels[frame, slots, 4, class_index] = [e.distance for e in same_class]
        return {"adpit": labels}

    def dropped(self, events: Iterable[Event]) -> int:
        counts = Counter((e.frame, e.class_index) for e in events)
        return sum(max(0, n - NUM_TRACKS) for n in counts.values())

    def decode(self, outputs: Mapping[str, np.ndarray], num_classes: int, settings: "PostProcessing") -> list[Event]:
        """A track is active when its xyz norm > its class's threshold; active same-class tracks closer than
        ``settings.unify_deg`` are merged by averaging their vectors (and distances), because ADPIT trains a
        single source to appear on several tracks. Sources of a frame and class are numbered 0, 1, 2 in
        track order (a merged group sits at its lowest track)."""
        (output,) = self.outputs_of(outputs)
        blocks = _class_blocks(output, NUM_TRACKS * self.coords, num_classes, "multi-ACCDOA")
        tracks = np.moveaxis(blocks.reshape(-1, NUM_TRACKS, self.coords, num_classes), 2, -1)  # (T, 3, C, coords)
        vectors = tracks[..., :3]
        distances = np.maximum(tracks[..., 3], 0.0) if self.with_distance else None
        active = np.linalg.norm(vectors, axis=-1) > class_thresholds(settings.thresholds, num_classes)  # (T, 3, C)
        similar = np.stack(
            [
                active[:, i] & active[:, j] & (angular_distance_deg(vectors[:, i], vectors[:, j]) < settings.unify_deg)
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
                events.append(make_event(frame, class_index, source, vector, distance))
        return events

    def transform(self, outputs: Mapping[str, np.ndarray], num_classes: int, transform: "FoaTransform") -> dict:
        array = np.asarray(outputs["accdoa"])
        _class_blocks(array, NUM_TRACKS * self.coords, num_classes, "multi-ACCDOA")
        return {**outputs, "accdoa": transformed_class_blocks(array, self.coords, num_classes, transform.vectors)}

    def loss_view(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> LossView:
        raise SeldEdgeError("multi_accdoa trains with the ADPIT loss (adpit_mse) only: its tracks have no fixed target")


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


@register_format
@dataclass(frozen=True)
class StereoAccdoa(OutputFormat):
    """``stereo_accdoa``: (T, 3*C) as [x][class], [y][class], [distance][class]; see the module docstring."""

    name: ClassVar[str] = "stereo_accdoa"
    outputs: ClassVar[tuple[str, ...]] = ("accdoa",)
    targets: ClassVar[tuple[str, ...]] = ("accdoa",)
    csv_form: ClassVar[str] = "dcase2025"
    # Stereo-RCnet eqs. 4-6: 1 x MSE on the vectors + 2 x MSPE on distances, both over C x T.
    default_loss: ClassVar = {"mse": 1.0, "mspe": {"weight": 2.0, "normaliser": "all"}}

    def encode(self, events: Iterable[Event], n_frames: int, num_classes: int) -> dict[str, np.ndarray]:
        """Unit (x, y) of the folded azimuth where active, distance in metres; elevation is ignored."""
        kept = lowest_source_per_class(checked_events(events, n_frames, num_classes, with_distance=True))
        target = np.zeros((n_frames, 3, num_classes), dtype=np.float32)
        if kept:
            frames = np.array([e.frame for e in kept])
            classes = np.array([e.class_index for e in kept])
            azimuth = np.deg2rad(fold_azimuth_front([e.azimuth for e in kept]))
            target[frames, 0, classes] = np.cos(azimuth)
            target[frames, 1, classes] = np.sin(azimuth)
            target[frames, 2, classes] = [e.distance for e in kept]
        return {"accdoa": target.reshape(n_frames, -1)}

    def decode(self, outputs: Mapping[str, np.ndarray], num_classes: int, settings: "PostProcessing") -> list[Event]:
        (output,) = self.outputs_of(outputs)
        blocks = _class_blocks(output, 3, num_classes, "stereo ACCDOA")
        active = np.linalg.norm(blocks[:, :2], axis=1) > class_thresholds(settings.thresholds, num_classes)
        events = []
        for frame, c in np.argwhere(active):
            event = make_event(frame, c, 0, blocks[frame, :2, c], max(blocks[frame, 2, c], 0.0))
            events.append(replace(event, azimuth=float(fold_azimuth_front(event.azimuth))))
        return events

    def transform(self, outputs: Mapping[str, np.ndarray], num_classes: int, transform: "FoaTransform") -> dict:
        """Only transforms that keep the horizontal plane apart from z (all of FOA_TRANSFORMS do) act on (x, y)."""
        array = np.asarray(outputs["accdoa"])
        blocks = _class_blocks(array, 3, num_classes, "stereo ACCDOA").copy()
        matrix = transform.matrix
        if np.any(matrix[:2, 2]) or np.any(matrix[2, :2]):
            raise SeldEdgeError(f"{transform.name} mixes elevation into the horizontal plane: not a stereo transform")
        xy = np.moveaxis(blocks[:, :2], 1, -1) @ matrix[:2, :2].T.astype(array.dtype)  # (T, C, 2)
        blocks[:, :2] = np.moveaxis(xy, -1, 1)
        return {**outputs, "accdoa": blocks.reshape(array.shape)}

    def loss_view(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> LossView:
        output, target = outputs["accdoa"], targets["accdoa"]
        output = output.reshape(*output.shape[:-1], 3, -1)
        target = target.reshape(*target.shape[:-1], 3, -1)
        return LossView(
            vectors=(output[..., :2, :], target[..., :2, :]),
            active=_unit_active(target[..., :2, :]),
            distance=(output[..., 2, :], target[..., 2, :]),
        )

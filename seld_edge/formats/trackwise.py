"""``trackwise``: EINV2 / MFF-EINV2's K tracks, each with its own class probabilities and one direction.

Output sed (T, K, C) probabilities and doa (T, K, 3). Targets fill tracks 0, 1, ... of a frame with
its events in (class, source) order; empty tracks are all zero. The order is arbitrary but fixed: the
track-wise PIT loss is taken over all track permutations of each frame, so any order trains the same.
Decoding follows EIN-SELD's inference: each track carries its most probable class only, active when
that probability exceeds that class's threshold; same-class tracks of a frame become sources 0, 1, ...
in track order.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import groupby
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from seld_edge.errors import SeldEdgeError
from seld_edge.formats.dcase_csv import Event
from seld_edge.formats.output_format import (
    LossView,
    OutputFormat,
    check_shape,
    checked_events,
    class_thresholds,
    directions,
    make_event,
    register_format,
)

if TYPE_CHECKING:
    from seld_edge.foa_transforms import FoaTransform
    from seld_edge.postprocess import PostProcessing


@register_format
@dataclass(frozen=True)
class Trackwise(OutputFormat):
    """``trackwise`` with ``num_tracks`` tracks (EINV2: 3); see the module docstring."""

    num_tracks: int = 3

    name: ClassVar[str] = "trackwise"
    outputs: ClassVar[tuple[str, ...]] = ("sed", "doa")
    targets: ClassVar[tuple[str, ...]] = ("sed", "doa")
    default_loss: ClassVar = {"trackwise_pit": 1.0}

    def encode(self, events: Iterable[Event], n_frames: int, num_classes: int) -> dict[str, np.ndarray]:
        """sed (T, K, C) one-hot per track and doa (T, K, 3) unit vectors.

        A frame with more events than tracks keeps the first K in (class, source) order, as ADPIT keeps
        three per class; :meth:`dropped` counts the rest so the data loader can report them.
        """
        checked = checked_events(events, n_frames, num_classes)
        sed = np.zeros((n_frames, self.num_tracks, num_classes), dtype=np.float32)
        doa = np.zeros((n_frames, self.num_tracks, 3), dtype=np.float32)
        for frame, group in groupby(checked, key=lambda e: e.frame):
            in_frame = list(group)[: self.num_tracks]
            tracks = np.arange(len(in_frame))
            sed[frame, tracks, [e.class_index for e in in_frame]] = 1.0
            doa[frame, tracks] = directions(in_frame)
        return {"sed": sed, "doa": doa}

    def dropped(self, events: Iterable[Event]) -> int:
        counts = Counter(e.frame for e in events)
        return sum(max(0, n - self.num_tracks) for n in counts.values())

    def decode(self, outputs: Mapping[str, np.ndarray], num_classes: int, settings: "PostProcessing") -> list[Event]:
        sed, doa = self.outputs_of(outputs)
        check_shape(sed, (None, None, num_classes), "track-wise SED output")
        check_shape(doa, (sed.shape[0], sed.shape[1], 3), "track-wise DOA output")
        best = sed.argmax(axis=-1)  # (T, K)
        best_probability = np.take_along_axis(sed, best[..., None], axis=-1)[..., 0]
        active = best_probability > class_thresholds(settings.thresholds, num_classes)[best]
        found = sorted((frame, best[frame, track], track) for frame, track in np.argwhere(active))
        events = []
        for (frame, class_index), group in groupby(found, key=lambda item: item[:2]):
            for source, (_, _, track) in enumerate(group):
                events.append(make_event(frame, class_index, source, doa[frame, track], None))
        return events

    def transform(self, outputs: Mapping[str, np.ndarray], num_classes: int, transform: "FoaTransform") -> dict:
        doa = np.asarray(outputs["doa"])
        if doa.ndim != 3 or doa.shape[-1] != 3:
            raise SeldEdgeError(f"track-wise DOA output has shape {doa.shape}, expected (T, K, 3)")
        return {**outputs, "doa": transform.vectors(doa)}

    def loss_view(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> LossView:
        raise SeldEdgeError(
            "trackwise trains with the track-wise PIT loss (trackwise_pit) only: its tracks are unordered"
        )

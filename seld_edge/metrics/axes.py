"""How closely each axis of the predicted directions follows the reference's: a diagnostic, not a DCASE score.

A localization error that stops falling says nothing of why. One cause the DCASE scores cannot show
is a model that ignores an axis: ``glfer_net_tiny`` trained at a learning rate of 2e-3 put out a near
constant z for every source (its encoder had learned to ignore the z intensity vector), and its LE
stalled near 32 degrees, about what a model that puts every source on the horizon scores when
elevations span +-45 degrees. Its x and y were as good as a better model's. The Pearson correlation
of each coordinate of the predicted unit vector with the reference's shows it at once: x 0.95, y
0.92, z -0.02.

The pairs are the (file, frame, class) triples where the reference and the prediction each have
exactly one event of the class, so that there is no question of which source goes with which.
A correlation is NaN where fewer than two pairs exist or one side does not vary (stereo data: z is
always 0).
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from seld_edge.formats.dcase_csv import Event
from seld_edge.formats.output_format import directions

AXES = ("x", "y", "z")


@dataclass(frozen=True)
class AxisAgreement:
    """Per-axis correlations (and spreads) of predicted and reference unit vectors over ``pairs`` pairs."""

    pairs: int
    correlation: dict[str, float]
    reference_std: dict[str, float]
    prediction_std: dict[str, float]


def _single_events(events: Iterable[Event]) -> dict[tuple[int, int], Event]:
    events = list(events)
    counts = Counter((e.frame, e.class_index) for e in events)
    return {(e.frame, e.class_index): e for e in events if counts[e.frame, e.class_index] == 1}


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


class AxisAgreementCounter:
    """Collects the pairs of one file at a time (:meth:`update`), then gives :meth:`result`."""

    def __init__(self) -> None:
        self._reference: list[Event] = []
        self._prediction: list[Event] = []

    def update(self, reference: Iterable[Event], prediction: Iterable[Event]) -> None:
        """Add one file's pairs: the (frame, class) where each side has exactly one event."""
        ref, pred = _single_events(reference), _single_events(prediction)
        for key in sorted(ref.keys() & pred.keys()):
            self._reference.append(ref[key])
            self._prediction.append(pred[key])

    def result(self) -> AxisAgreement:
        ref = directions(self._reference)
        pred = directions(self._prediction)
        nan = float("nan")
        return AxisAgreement(
            pairs=len(ref),
            correlation={a: _correlation(ref[:, i], pred[:, i]) for i, a in enumerate(AXES)},
            reference_std={a: float(ref[:, i].std()) if len(ref) else nan for i, a in enumerate(AXES)},
            prediction_std={a: float(pred[:, i].std()) if len(pred) else nan for i, a in enumerate(AXES)},
        )

"""Counters and conventions shared by the segment-level (2021-2023) and frame-level (2024-2025) metrics.

The official DCASE evaluation classes (``SELDMetrics`` in the baselines) all keep the same per-class
counters and the same block/frame-wise substitution, deletion and insertion tallies; :class:`Counts` is
that state, written once. Everything here follows the official code's arithmetic, including its
``eps`` in the denominators, so scores agree with the published evaluation to floating-point noise.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from seld_edge.formats.dcase_csv import Event

EPS = float(np.finfo(np.float64).eps)  # the official code's `eps` (np.finfo(np.float).eps)
DOA_THRESHOLD_DEG = 20.0  # lad_doa_thresh: a detection counts only within 20 degrees


class Scorer(Protocol):
    """Accumulates one metric over files; ``update`` once per file, as the official code does."""

    def update(self, reference: Sequence[Event], prediction: Sequence[Event]) -> None: ...

    def scores(self) -> dict[str, float]: ...

    def per_class(self) -> dict[str, np.ndarray]: ...


def _zeros(num_classes: int) -> np.ndarray:
    return np.zeros(num_classes, dtype=np.float64)


@dataclass
class Counts:
    """The official per-class counters (TP, FP, spatial FP, FN, N_ref, ...) and the global S, D, I.

    ``fp`` holds plain false alarms (predicted tracks with no reference, or surplus tracks), while
    ``fp_spatial`` holds matched tracks that failed the direction (or distance) threshold: the 2022+
    F-score weighs them differently (see :meth:`f_per_class`).
    """

    num_classes: int
    tp: np.ndarray = field(init=False)
    fp: np.ndarray = field(init=False)
    fp_spatial: np.ndarray = field(init=False)
    fn: np.ndarray = field(init=False)
    nref: np.ndarray = field(init=False)
    de_tp: np.ndarray = field(init=False)  # matched tracks (class-sensitive localization)
    de_fn: np.ndarray = field(init=False)
    total_angle: np.ndarray = field(init=False)
    total_dist: np.ndarray = field(init=False)
    total_rel_dist: np.ndarray = field(init=False)
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    def __post_init__(self) -> None:
        for name in ("tp", "fp", "fp_spatial", "fn", "nref", "de_tp", "de_fn"):
            setattr(self, name, _zeros(self.num_classes))
        for name in ("total_angle", "total_dist", "total_rel_dist"):
            setattr(self, name, _zeros(self.num_classes))

    def missed(self, class_index: int, count: int) -> int:
        """Reference tracks with no prediction: FN for detection and for localization recall."""
        self.fn[class_index] += count
        self.de_fn[class_index] += count
        return count

    def false_alarm(self, class_index: int, count: int) -> int:
        """Predicted tracks with no reference."""
        self.fp[class_index] += count
        return count

    def close_block(self, loc_fp: int, loc_fn: int) -> None:
        """S, D and I of one block (2021-2023) or frame (2024-2025), summed over classes first."""
        self.substitutions += min(loc_fp, loc_fn)
        self.deletions += max(0, loc_fn - loc_fp)
        self.insertions += max(0, loc_fp - loc_fn)

    def error_rate(self) -> float:
        """ER = (S + D + I) / N_ref, always over all classes (never macro-averaged).

        With no reference events at all the official ``+ eps`` denominator gives 0 without
        predictions and a huge (finite) number with them; reproduced, not special-cased.
        """
        errors = self.substitutions + self.deletions + self.insertions
        return errors / (self.nref.sum() + EPS)

    def f_per_class(self) -> np.ndarray:
        """2022+ location-sensitive F per class: TP / (TP + FP_spatial + (FP + FN) / 2).

        A class absent from both reference and prediction gets 0 / eps = 0, exactly as in the
        official code, and still counts in the macro average (so a perfect prediction of a scene
        using 3 of 13 classes scores F = 3/13).
        """
        return self.tp / (EPS + self.tp + self.fp_spatial + 0.5 * (self.fp + self.fn))

    def recall_per_class(self) -> np.ndarray:
        """Localization recall LR = matched tracks / reference tracks (0 for an absent class)."""
        return self.de_tp / (EPS + self.de_tp + self.de_fn)

    def mean_error_per_class(self, total: np.ndarray, missing: float = np.nan) -> np.ndarray:
        """total / matched count per class, ``missing`` where a class has no matched track."""
        mean = total / (self.de_tp + EPS)
        mean[self.de_tp == 0] = missing
        return mean


def reference_length(events: Sequence[Event]) -> int:
    """Frames scored for a file: the largest reference frame index (not + 1), 0 for an empty file.

    This is the official quirk (``nb_ref_frames = max(gt_dict.keys())``): frames are then visited
    with ``range(0, nb_ref_frames)``, so the last annotated frame is left out of frame-level scoring.
    The official code crashes on an empty reference; here such a file simply scores nothing.
    """
    return max((e.frame for e in events), default=0)

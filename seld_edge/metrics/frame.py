"""DCASE 2024-2025 frame-level SELD metrics with distance: F, angular error, DE, RDE (and 2024's SELD).

Reproduces ``SELD_evaluation_metrics.SELDMetrics`` of partha2409/DCASE2024_seld_baseline (run as its
parameters.py sets it: frame level, ``evaluate_distance=True``, ``lad_reldist_thresh=1``, absolute
distance threshold infinite, macro averaging) and ``metrics.SELDMetrics`` of
partha2409/DCASE2025_seld_baseline (audio-only: on-screen correctness not required).

How it scores, per frame and class: a Hungarian assignment on the direction cost pairs min(R, P)
events; a pair is a TP only if its angle is <= 20 degrees and its relative distance error
|d_ref - d_pred| / d_ref is <= 1, otherwise a spatial FP. Surplus predictions are FP, missing ones FN.
Angle and distance errors are averaged over *all* matched pairs, whether or not they passed.

* 2024: Cartesian angle from azimuth/elevation, with the official ``+ 1e-10`` inside the vector norms;
  it makes a perfect direction score about 8.1e-4 degrees instead of 0. Distances in metres (the
  reference's centimetres are converted on reading, predictions are metres).
* 2025: cost |fold(az_ref) - fold(az_pred)| with azimuth folded to [-90, 90] (a stereo pair cannot
  tell front from back); distances in centimetres on both sides; no ER, LR or SELD score.

Macro averaging as in the official code: F is averaged over all classes (0 for a class absent from
both sides); angle, distance and relative distance errors are NaN for a class with no matched pair
and averaged with ``nanmean``, so they are NaN when no class has a match at all. 2024's SELD score is
per class ``nanmean(1 - F, AE / 180, RDE)``, averaged over classes.

Not reproduced: the official code asserts when a 2024 prediction has no distance column (here it is
scored as 0 m, what the CSV writer stores), and the 2025 loader overwrites same-class events beyond
10 in one frame (here all are kept).
"""

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from seld_edge.errors import SeldEdgeError
from seld_edge.formats.dcase_csv import Event
from seld_edge.geometry import fold_azimuth_front
from seld_edge.metrics.common import DOA_THRESHOLD_DEG, EPS, Counts, reference_length

RELATIVE_DISTANCE_THRESHOLD = 1.0  # lad_reldist_thresh (lad_dist_thresh is infinite: no absolute test)

# frame -> class -> events of that class in that frame, in file order
Frames = dict[int, dict[int, list[Event]]]


def frame_events(events: Sequence[Event], n_frames: int) -> Frames:
    """Group events like ``organize_labels``: only frames 0 .. n_frames - 1 are kept."""
    frames: Frames = {}
    for event in events:
        if event.frame < n_frames:
            frames.setdefault(event.frame, {}).setdefault(event.class_index, []).append(event)
    return frames


def _xyz(events: Sequence[Event]) -> np.ndarray:
    az = np.array([e.azimuth for e in events], dtype=np.float64) * np.pi / 180.0
    el = np.array([e.elevation for e in events], dtype=np.float64) * np.pi / 180.0
    return np.stack([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)], axis=-1)


def cartesian_angle_deg(reference: Sequence[Event], prediction: Sequence[Event]) -> np.ndarray:
    """(R, P) angles in degrees as the 2024 code computes them (unit vectors, norms with + 1e-10)."""
    ref, pred = _xyz(reference), _xyz(prediction)
    ref = ref / np.sqrt(ref[:, 0] ** 2 + ref[:, 1] ** 2 + ref[:, 2] ** 2 + 1e-10)[:, None]
    pred = pred / np.sqrt(pred[:, 0] ** 2 + pred[:, 1] ** 2 + pred[:, 2] ** 2 + 1e-10)[:, None]
    cos = ref[:, None, 0] * pred[None, :, 0] + ref[:, None, 1] * pred[None, :, 1] + ref[:, None, 2] * pred[None, :, 2]
    return np.arccos(np.clip(cos, -1.0, 1.0)) * 180.0 / np.pi


def folded_azimuth_error_deg(reference: Sequence[Event], prediction: Sequence[Event]) -> np.ndarray:
    """(R, P) azimuth differences after folding both to [-90, 90] (DCASE 2025 stereo)."""
    ref = fold_azimuth_front(np.array([e.azimuth for e in reference], dtype=np.float64))
    pred = fold_azimuth_front(np.array([e.azimuth for e in prediction], dtype=np.float64))
    return np.abs(ref[:, None] - pred[None, :])


def _distances(events: Sequence[Event], scale: float) -> np.ndarray:
    """Distances times ``scale``; a prediction without distance counts as 0, as written to CSV."""
    return np.array([(e.distance or 0.0) * scale for e in events], dtype=np.float64)


class FrameScorer:
    """Frame-level metrics: ``stereo=False`` is DCASE 2024, ``stereo=True`` is DCASE 2025."""

    def __init__(self, num_classes: int, stereo: bool = False) -> None:
        self.num_classes = num_classes
        self.stereo = stereo
        self.distance_scale = 100.0 if stereo else 1.0  # 2025 keeps centimetres, 2024 metres
        self.counts = Counts(num_classes)

    def update(self, reference: Sequence[Event], prediction: Sequence[Event]) -> None:
        """Add one file; frames 0 .. max reference frame - 1 are scored (the official quirk)."""
        if any(e.distance is None for e in reference):
            name = "dcase2025" if self.stereo else "dcase2024"
            raise SeldEdgeError(f"{name} needs reference distances; this reference has events without one")
        n_frames = reference_length(reference)
        ref_frames, pred_frames = frame_events(reference, n_frames), frame_events(prediction, n_frames)
        for frame in sorted(ref_frames.keys() | pred_frames.keys()):  # empty frames add nothing
            ref_classes, pred_classes = ref_frames.get(frame, {}), pred_frames.get(frame, {})
            loc_fp = loc_fn = 0
            for class_index in range(self.num_classes):
                ref_events, pred_events = ref_classes.get(class_index), pred_classes.get(class_index)
                if ref_events:
                    self.counts.nref[class_index] += len(ref_events)
                if ref_events and pred_events:
                    fp, fn = self._match(class_index, ref_events, pred_events)
                    loc_fp, loc_fn = loc_fp + fp, loc_fn + fn
                elif ref_events:
                    loc_fn += self.counts.missed(class_index, len(ref_events))
                elif pred_events:
                    loc_fp += self.counts.false_alarm(class_index, len(pred_events))
            self.counts.close_block(loc_fp, loc_fn)

    def _match(self, class_index: int, ref_events: list[Event], pred_events: list[Event]) -> tuple[int, int]:
        """Score one class in one frame; returns the frame's (FP, FN) contribution."""
        if self.stereo:
            cost = folded_azimuth_error_deg(ref_events, pred_events)
        else:
            cost = cartesian_angle_deg(ref_events, pred_events)
        rows, cols = linear_sum_assignment(cost)
        angle = cost[rows, cols]
        ref_dist = _distances(ref_events, self.distance_scale)[rows]
        dist_err = np.abs(ref_dist - _distances(pred_events, self.distance_scale)[cols])
        rel_dist_err = dist_err / (ref_dist + EPS)
        failed = int(np.sum((angle > DOA_THRESHOLD_DEG) | (rel_dist_err > RELATIVE_DISTANCE_THRESHOLD)))
        n_ref, n_pred = len(ref_events), len(pred_events)
        matched = min(n_ref, n_pred)

        c = self.counts
        c.total_angle[class_index] += angle.sum()
        c.total_dist[class_index] += dist_err.sum()
        c.total_rel_dist[class_index] += rel_dist_err.sum()
        c.tp[class_index] += matched - failed
        c.de_tp[class_index] += matched
        c.fp_spatial[class_index] += failed
        surplus = c.false_alarm(class_index, max(0, n_pred - n_ref))
        return surplus + failed, c.missed(class_index, max(0, n_ref - n_pred))

    def per_class(self) -> dict[str, np.ndarray]:
        """Results per class, as the baselines print them. 2024: ER (global, repeated), F, LE, DE (m), RDE,
        LR, SELD; 2025: F, AE, DE (cm), RDE. Errors are NaN for a class with no matched pair."""
        c = self.counts
        f = c.f_per_class()
        angle = c.mean_error_per_class(c.total_angle)
        dist = c.mean_error_per_class(c.total_dist)
        rel_dist = c.mean_error_per_class(c.total_rel_dist)
        if self.stereo:
            return {"F": f, "AE": angle, "DE": dist, "RDE": rel_dist}
        seld = np.nanmean([1.0 - f, angle / 180.0, rel_dist], axis=0)  # 1 - F for a class with nothing matched
        er = np.full(self.num_classes, c.error_rate())
        return {"ER": er, "F": f, "LE": angle, "DE": dist, "RDE": rel_dist, "LR": c.recall_per_class(), "SELD": seld}

    def scores(self) -> dict[str, float]:
        """2024: ER, F, LE, LR, SELD, DE (m), RDE. 2025: F, AE, DE (cm), RDE. NaN as documented above."""
        table = self.per_class()
        angle = table["AE" if self.stereo else "LE"]
        with warnings.catch_warnings():  # nanmean of all-NaN is NaN, as in the official code
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_angle, mean_dist, mean_rel = np.nanmean(angle), np.nanmean(table["DE"]), np.nanmean(table["RDE"])
        if self.stereo:
            return {"F": float(table["F"].mean()), "AE": float(mean_angle), "DE": float(mean_dist),
                    "RDE": float(mean_rel)}  # fmt: skip
        return {
            "ER": float(self.counts.error_rate()),
            "F": float(table["F"].mean()),
            "LE": float(mean_angle),
            "LR": float(table["LR"].mean()),
            "SELD": float(table["SELD"].mean()),
            "DE": float(mean_dist),
            "RDE": float(mean_rel),
        }

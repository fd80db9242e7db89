"""DCASE 2021-2023 segment-level SELD metrics: ER20, F20, LE_CD, LR_CD and the SELD score.

Reproduces the official baselines' evaluation: ``SELD_evaluation_metrics.SELDMetrics`` together with
``cls_feature_class.segment_labels`` of sharathadavanne/seld-dcase2023 (identical in seld-dcase2022;
macro averaging) and of sharathadavanne/seld-dcase2021 (micro averaging). Both compare reference and
prediction in polar form with the spherical great-circle formula.

How it scores: labels are grouped into 1 s blocks of 10 frames. Per block and class, the number of
tracks is the largest number of same-class events in any of its frames. In each frame present in both,
a Hungarian assignment on the angle pairs the events; a reference "track" is the *position* of the
event in its frame's list (file order), not its source id (the official code has a TODO there). A
track's angle is averaged over the block's matched frames: TP within 20 degrees, otherwise a spatial
false positive. Surplus predicted tracks are FP, missing ones FN.

Quirks kept on purpose (they change the numbers):

* The number of blocks is ceil(n / 10) with n the largest reference frame index, and every block
  spans 10 frames, so the last annotated frame is dropped only when n is a multiple of 10.
* When a class is in both reference and prediction of a block but they share no frame, the official
  code adds the *predicted* track count to FN (and nothing to FP).
* Macro (2022/2023): F, LE, LR and the SELD score are computed per class and averaged over all
  classes; a class absent from reference and prediction has F = 0, LE = 180, LR = 0. A class with
  no matched track has LE = 180. ER is global.
* Micro (2021): a spatial false positive is an ordinary FP, weighted 1/2 in F like any FP.
"""

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from seld_edge.formats.dcase_csv import Event
from seld_edge.metrics.common import DOA_THRESHOLD_DEG, EPS, Counts, reference_length

FRAMES_PER_BLOCK = 10  # 1 s of 100 ms label frames
DCASE2021_CLIP_FRAMES = 600  # the 2021 code scores a fixed 60 s (max_audio_len_s) per file

# block index -> class -> frame -> events of that class in that frame, in file order
Blocks = dict[int, dict[int, dict[int, list[Event]]]]


def segment_events(events: Sequence[Event], n_blocks: int) -> Blocks:
    """Group events into 1 s blocks like ``segment_labels``; frames past the last block are dropped."""
    blocks: Blocks = {}
    for event in sorted(events, key=lambda e: e.frame):  # stable: file order inside a frame
        block = event.frame // FRAMES_PER_BLOCK
        if block >= n_blocks:
            continue
        by_class = blocks.setdefault(block, {})
        by_class.setdefault(event.class_index, {}).setdefault(event.frame, []).append(event)
    return blocks


def spherical_angle_deg(reference: Sequence[Event], prediction: Sequence[Event]) -> np.ndarray:
    """(R, P) great-circle angles in degrees, with the official formula on azimuth/elevation."""
    ref = np.array([[e.azimuth, e.elevation] for e in reference], dtype=np.float64) * np.pi / 180.0
    pred = np.array([[e.azimuth, e.elevation] for e in prediction], dtype=np.float64) * np.pi / 180.0
    az1, el1 = ref[:, :1], ref[:, 1:]
    az2, el2 = pred[:, 0][None, :], pred[:, 1][None, :]
    cos = np.sin(el1) * np.sin(el2) + np.cos(el1) * np.cos(el2) * np.cos(np.abs(az1 - az2))
    return np.arccos(np.clip(cos, -1.0, 1.0)) * 180.0 / np.pi


class SegmentScorer:
    """Segment-level metrics: ``dcase2021=False`` is DCASE 2022/2023 (macro), ``True`` is 2021 (micro).

    The 2021 variant also scores a fixed 60 s per file as the 2021 code did; a longer reference is
    scored up to its last frame instead of being cut (identical numbers on TAU-NIGENS 60 s clips).
    """

    def __init__(self, num_classes: int, dcase2021: bool = False) -> None:
        self.num_classes = num_classes
        self.dcase2021 = dcase2021
        self.counts = Counts(num_classes)

    def _n_blocks(self, reference: Sequence[Event]) -> int:
        if self.dcase2021:
            n_frames = max(DCASE2021_CLIP_FRAMES, max((e.frame + 1 for e in reference), default=0))
        else:
            n_frames = reference_length(reference)
        return -(-n_frames // FRAMES_PER_BLOCK)  # ceil

    def update(self, reference: Sequence[Event], prediction: Sequence[Event]) -> None:
        """Add one file; the block count comes from this file's reference."""
        n_blocks = self._n_blocks(reference)
        ref_blocks = segment_events(reference, n_blocks)
        pred_blocks = segment_events(prediction, n_blocks)
        for block in sorted(ref_blocks.keys() | pred_blocks.keys()):  # empty blocks add nothing
            ref_classes, pred_classes = ref_blocks.get(block, {}), pred_blocks.get(block, {})
            loc_fp = loc_fn = 0
            for class_index in range(self.num_classes):
                ref_frames, pred_frames = ref_classes.get(class_index), pred_classes.get(class_index)
                n_ref = max(map(len, ref_frames.values())) if ref_frames else 0
                n_pred = max(map(len, pred_frames.values())) if pred_frames else 0
                self.counts.nref[class_index] += n_ref
                if ref_frames and pred_frames:
                    fp, fn = self._match_tracks(class_index, ref_frames, pred_frames, n_ref, n_pred)
                    loc_fp, loc_fn = loc_fp + fp, loc_fn + fn
                elif ref_frames:
                    loc_fn += self.counts.missed(class_index, n_ref)
                elif pred_frames:
                    loc_fp += self.counts.false_alarm(class_index, n_pred)
            self.counts.close_block(loc_fp, loc_fn)

    def _match_tracks(
        self,
        class_index: int,
        ref_frames: dict[int, list[Event]],
        pred_frames: dict[int, list[Event]],
        n_ref: int,
        n_pred: int,
    ) -> tuple[int, int]:
        """Score one class in one block; returns the block's (FP, FN) contribution."""
        track_angles: dict[int, list[float]] = {}  # reference position in frame -> matched angles
        for frame, ref_events in ref_frames.items():
            pred_events = pred_frames.get(frame)
            if pred_events is None:
                continue
            cost = spherical_angle_deg(ref_events, pred_events)
            rows, cols = linear_sum_assignment(cost)
            for row, col in zip(rows, cols, strict=True):
                track_angles.setdefault(int(row), []).append(float(cost[row, col]))

        counts = self.counts
        if not track_angles:  # official quirk: the *predicted* track count is added to FN
            return 0, counts.missed(class_index, n_pred)
        fp = fn = 0
        for angles in track_angles.values():
            mean_angle = sum(angles) / len(angles)
            counts.total_angle[class_index] += mean_angle
            counts.de_tp[class_index] += 1
            if mean_angle <= DOA_THRESHOLD_DEG:
                counts.tp[class_index] += 1
            else:
                counts.fp_spatial[class_index] += 1
                fp += 1
        if n_pred > n_ref:
            fp += counts.false_alarm(class_index, n_pred - n_ref)
        elif n_pred < n_ref:
            fn += counts.missed(class_index, n_ref - n_pred)
        return fp, fn

    def per_class(self) -> dict[str, np.ndarray]:
        """Macro (2022/2023) results per class, as the baselines print them: ER (global, repeated), F and
        LR as fractions, LE in degrees, SELD; the scores are their means over all classes.

        The 2021 metric is micro-averaged over events and has no per-class results (ValueError).
        """
        if self.dcase2021:
            raise ValueError("dcase2021 averages over events (micro): it has no per-class results")
        c = self.counts
        er = c.error_rate()
        f = c.f_per_class()
        le = c.mean_error_per_class(c.total_angle, missing=180.0)
        lr = c.recall_per_class()
        seld = np.mean([np.full(self.num_classes, er), 1.0 - f, le / 180.0, 1.0 - lr], axis=0)
        return {"ER": np.full(self.num_classes, er), "F": f, "LE": le, "LR": lr, "SELD": seld}

    def scores(self) -> dict[str, float]:
        """ER, F and LR as fractions, LE in degrees, SELD = mean(ER, 1 - F, LE / 180, 1 - LR)."""
        c = self.counts
        er = c.error_rate()
        if self.dcase2021:
            tp, de_tp = c.tp.sum(), c.de_tp.sum()
            f = tp / (EPS + tp + 0.5 * (c.fp.sum() + c.fp_spatial.sum() + c.fn.sum()))
            le = c.total_angle.sum() / (de_tp + EPS) if de_tp else 180.0
            lr = de_tp / (EPS + de_tp + c.de_fn.sum())
            seld = np.mean([er, 1.0 - f, le / 180.0, 1.0 - lr])
            return {"ER": float(er), "F": float(f), "LE": float(le), "LR": float(lr), "SELD": float(seld)}
        table = self.per_class()
        return {
            "ER": float(er),
            "F": float(table["F"].mean()),
            "LE": float(table["LE"].mean()),
            "LR": float(table["LR"].mean()),
            "SELD": float(table["SELD"].mean()),
        }

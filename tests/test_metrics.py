"""DCASE SELD metrics: hand-worked cases, the official quirks, and an independent transliteration.

Conventions in the hand-worked comments: segment metrics (2021/2023) group frames into 1 s blocks of 10
frames and score max(frame index) frames rounded up to whole blocks; frame metrics (2024/2025) score
frames 0 .. max(frame index) - 1. F = TP / (TP + FP_spatial + (FP + FN) / 2) per class, macro-averaged.
"""

import math
from collections.abc import Sequence

import numpy as np
import pytest

from seld_edge.errors import SeldEdgeError
from seld_edge.formats.dcase_csv import Event, write_events
from seld_edge.geometry import angular_distance_deg, polar_to_unit
from seld_edge.metrics import METRICS, evaluate, evaluate_dirs

# arccos(1 / (1 + 1e-10)) in degrees: the 2024 code's angle for two identical directions (the + 1e-10
# inside its vector norms), so a perfect 2024 prediction has LE of about 8.1e-4 degrees, not 0.
QUIRK_ZERO_ANGLE_2024 = math.degrees(math.acos(1.0 / (1.0 + 1e-10)))


def track(frames: range, cls: int, az: float, el: float = 0.0, src: int = 0, dist: float | None = 2.0) -> list[Event]:
    return [Event(f, cls, src, az, el, dist) for f in frames]


def score(ref: list[Event], pred: list[Event], metric: str, num_classes: int) -> dict[str, float]:
    return evaluate([(ref, pred)], metric=metric, num_classes=num_classes)


def test_metric_names_and_keys() -> None:
    assert METRICS == ("dcase2021", "dcase2023", "dcase2024", "dcase2025")
    ref = track(range(0, 12), 0, 10.0)
    keys = {m: set(score(ref, ref, m, 1)) for m in METRICS}
    assert keys["dcase2021"] == keys["dcase2023"] == {"ER", "F", "LE", "LR", "SELD"}
    assert keys["dcase2024"] == {"ER", "F", "LE", "LR", "SELD", "DE", "RDE"}
    assert keys["dcase2025"] == {"F", "AE", "DE", "RDE"}
    with pytest.raises(ValueError, match="dcase2021, dcase2023, dcase2024, dcase2025"):
        score(ref, ref, "dcase2099", 1)


def test_perfect_prediction() -> None:
    # Two classes, both present: every class is a TP in every block/frame.
    ref = track(range(0, 20), 0, 30.0, 10.0, dist=2.0) + track(range(5, 15), 1, -60.0, dist=3.0)
    s = score(ref, ref, "dcase2023", 2)
    assert s["ER"] == 0.0
    assert s["F"] == pytest.approx(1.0) and s["LR"] == pytest.approx(1.0)
    assert s["LE"] == pytest.approx(0.0, abs=1e-5) and s["SELD"] == pytest.approx(0.0, abs=1e-6)

    s = score(ref, ref, "dcase2024", 2)
    assert s["ER"] == 0.0 and s["F"] == pytest.approx(1.0) and s["LR"] == pytest.approx(1.0)
    assert s["DE"] == 0.0 and s["RDE"] == 0.0
    assert s["LE"] == pytest.approx(QUIRK_ZERO_ANGLE_2024, rel=1e-3)
    # SELD per class = nanmean(1 - F, LE / 180, RDE) = (0 + LE / 180 + 0) / 3
    assert s["SELD"] == pytest.approx(QUIRK_ZERO_ANGLE_2024 / 540, rel=1e-3)


def test_macro_average_counts_absent_classes_as_zero() -> None:
    # The official macro F averages over all 13 classes; the 11 absent ones have F = 0 / eps = 0,
    # LE = 180 and LR = 0, so their SELD is mean(ER=0, 1, 1, 1) = 0.75.
    ref = track(range(0, 20), 0, 30.0) + track(range(5, 15), 1, -60.0)
    s = score(ref, ref, "dcase2023", 13)
    assert s["F"] == pytest.approx(2 / 13)
    assert s["LE"] == pytest.approx(11 * 180 / 13, abs=1e-4)
    assert s["SELD"] == pytest.approx(11 * 0.75 / 13, abs=1e-6)


def test_constant_40_degree_error() -> None:
    # Class 0 is predicted 40 degrees off in all frames 0..9, class 1 is exact (both in one block).
    ref = track(range(0, 10), 0, 0.0) + track(range(0, 10), 1, 90.0)
    pred = track(range(0, 10), 0, 40.0) + track(range(0, 10), 1, 90.0)
    # 2023, one block: class 0 matched with mean angle 40 > 20 -> spatial FP (weight 1 in F, the same as
    # FP + FN at 1/2 each), class 1 TP. Block: loc_FP = 1, loc_FN = 0 -> I = 1; N_ref = 2 -> ER = 0.5.
    # F = mean(0, 1) = 0.5; LE = mean(40, 0) = 20; LR = mean(1, 1) = 1.
    # SELD = mean(mean(0.5, 1, 40/180, 0), mean(0.5, 0, 0, 0)) = mean(0.430556, 0.125) = 0.277778
    s = score(ref, pred, "dcase2023", 2)
    assert s["ER"] == pytest.approx(0.5)
    assert s["F"] == pytest.approx(0.5)
    assert s["LE"] == pytest.approx(20.0, abs=1e-5)
    assert s["LR"] == pytest.approx(1.0)
    assert s["SELD"] == pytest.approx((0.5 + 1 + 40 / 180) / 8 + 0.5 / 8, abs=1e-6)
    assert s["SELD"] == pytest.approx(0.277778, abs=1e-6)

    # 2024: frames 0..8 scored, each with one spatial FP (I = 1) and one TP: ER = 9 / 18, F = 0.5.
    # SELD = mean(nanmean(1, 40/180, 0), nanmean(0, ~0, 0)) = (1 + 2/9) / 6 = 0.203704
    s = score(ref, pred, "dcase2024", 2)
    assert s["ER"] == pytest.approx(0.5) and s["F"] == pytest.approx(0.5) and s["LR"] == pytest.approx(1.0)
    assert s["LE"] == pytest.approx(20.0, abs=1e-3)
    assert s["SELD"] == pytest.approx((1 + 40 / 180) / 6, abs=1e-5)


def test_inserted_and_deleted_events() -> None:
    # Reference: class 0 in frames 0..19 (two blocks), class 1 in frames 0..9 (block 0).
    # Prediction: class 0 exact, class 1 deleted, class 2 inserted.
    ref = track(range(0, 20), 0, 0.0) + track(range(0, 10), 1, 90.0)
    base = track(range(0, 20), 0, 0.0)

    # Insertion in block 1: block 0 has D = 1, block 1 has I = 1; N_ref = 2 + 1 = 3 -> ER = 2/3.
    # F = mean(1, 0, 0) = 1/3; LE = mean(0, 180, 180) = 120; LR = mean(1, 0, 0) = 1/3.
    # SELD = mean(mean(2/3, 0, 0, 0), mean(2/3, 1, 1, 1) twice) = mean(1/6, 11/12, 11/12) = 2/3
    s = score(ref, base + track(range(10, 20), 2, -90.0), "dcase2023", 3)
    assert s["ER"] == pytest.approx(2 / 3)
    assert s["F"] == pytest.approx(1 / 3)
    assert s["LE"] == pytest.approx(120.0, abs=1e-5)
    assert s["LR"] == pytest.approx(1 / 3)
    assert s["SELD"] == pytest.approx(2 / 3, abs=1e-6)

    # Insertion in block 0 instead: FP and FN in the same block make one substitution -> ER = 1/3.
    # SELD = mean(mean(1/3, 0, 0, 0), mean(1/3, 1, 1, 1) twice) = mean(1/12, 5/6, 5/6) = 7/12
    s = score(ref, base + track(range(0, 10), 2, -90.0), "dcase2023", 3)
    assert s["ER"] == pytest.approx(1 / 3)
    assert s["F"] == pytest.approx(1 / 3)
    assert s["SELD"] == pytest.approx(7 / 12, abs=1e-6)


def test_same_class_overlap_with_swapped_source_ids_is_perfect() -> None:
    # Two sources of class 0; the prediction swaps their source ids and lists them in reverse order.
    ref = track(range(0, 10), 0, 0.0, src=0, dist=1.0) + track(range(0, 10), 0, 90.0, src=1, dist=3.0)
    pred = track(range(0, 10), 0, 90.0, src=0, dist=3.0) + track(range(0, 10), 0, 0.0, src=1, dist=1.0)
    s = score(ref, pred, "dcase2023", 1)
    assert s["ER"] == 0.0 and s["F"] == pytest.approx(1.0) and s["LE"] == pytest.approx(0.0, abs=1e-5)
    s = score(ref, pred, "dcase2024", 1)
    assert s["ER"] == 0.0 and s["F"] == pytest.approx(1.0) and s["DE"] == 0.0


def test_empty_and_missing_prediction_files(tmp_path) -> None:
    # Two references (class 0 in frames 0..19 = two blocks each), one empty prediction file, one missing.
    # 2023: every block is a deletion: ER = 4 / 4 = 1, F = 0, LE = 180, LR = 0, SELD = mean(1, 1, 1, 1) = 1.
    ref = track(range(0, 20), 0, 45.0, dist=2.0)
    for name in ("a", "b"):
        write_events(tmp_path / "ref" / "dev-test" / f"{name}.csv", ref, form="polar")
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "a.csv").write_text("")
    s = evaluate_dirs(tmp_path / "ref", tmp_path / "pred", metric="dcase2023", num_classes=1)
    assert s == {"ER": pytest.approx(1.0), "F": 0.0, "LE": 180.0, "LR": 0.0, "SELD": pytest.approx(1.0)}
    assert evaluate([(ref, []), (ref, [])], "dcase2023", 1) == s

    # 2024: nothing matched, so the angle and distance errors are NaN as in the official code;
    # SELD = nanmean(1 - 0, NaN, NaN) = 1.
    s = evaluate_dirs(tmp_path / "ref", tmp_path / "pred", metric="dcase2024", num_classes=1)
    assert s["ER"] == pytest.approx(1.0) and s["F"] == 0.0 and s["LR"] == 0.0 and s["SELD"] == 1.0
    assert math.isnan(s["LE"]) and math.isnan(s["DE"]) and math.isnan(s["RDE"])


def test_last_annotated_frame_is_not_scored() -> None:
    # 2024: reference frames 0..4 -> frames 0..3 scored; a prediction missing frame 4, or wrong there,
    # is still perfect.
    ref = track(range(0, 5), 0, 0.0)
    assert score(ref, ref[:4], "dcase2024", 1)["F"] == pytest.approx(1.0)
    wrong_last = [*ref[:4], Event(4, 0, 0, 120.0, 0.0, 9.0)]
    assert score(ref, wrong_last, "dcase2024", 1)["ER"] == 0.0

    # 2023: frames 0..20 -> n = 20 -> two blocks (frames 0..19): frame 20 is never looked at.
    ref = track(range(0, 21), 0, 0.0)
    s = score(ref, ref[:20], "dcase2023", 1)
    assert s["ER"] == 0.0 and s["F"] == pytest.approx(1.0)
    # frames 0..21 -> n = 21 -> three blocks; block 2 (frames 20, 21) is missed: ER = 1/3,
    # F = 2 / (2 + 1/2) = 0.8, LR = 2/3.
    ref = track(range(0, 22), 0, 0.0)
    s = score(ref, ref[:20], "dcase2023", 1)
    assert s["ER"] == pytest.approx(1 / 3) and s["F"] == pytest.approx(0.8) and s["LR"] == pytest.approx(2 / 3)


def test_segment_quirk_class_in_block_without_shared_frame() -> None:
    # Block 0: two class-0 sources in frames 0..4, one predicted class-0 source in frames 5..9 only.
    # No frame is shared, so nothing is matched; the official code then adds the *predicted* track
    # count (1) to FN and nothing to FP. N_ref = 2, loc_FN = 1 -> ER = 1/2; F = 0; LE = 180; LR = 0.
    ref = track(range(0, 5), 0, 0.0, src=0) + track(range(0, 5), 0, 90.0, src=1)
    s = score(ref, track(range(5, 10), 0, 0.0), "dcase2023", 1)
    assert s == {"ER": pytest.approx(0.5), "F": 0.0, "LE": 180.0, "LR": 0.0, "SELD": pytest.approx(0.875)}


def test_2025_folded_azimuth_and_centimetres() -> None:
    # Stereo cannot tell front from back: 150 degrees folds to 30 degrees.
    ref = track(range(0, 11), 0, 30.0, dist=2.0)
    s = score(ref, track(range(0, 11), 0, 150.0, dist=2.0), "dcase2025", 1)
    assert s == {"F": pytest.approx(1.0), "AE": 0.0, "DE": 0.0, "RDE": 0.0}
    s = score(ref, track(range(0, 11), 0, -30.0, dist=2.0), "dcase2025", 1)
    assert s["F"] == 0.0 and s["AE"] == pytest.approx(60.0)
    # 2.5 m for 2 m: DE in cm as the 2025 code keeps it, RDE = 50 / 200.
    s = score(ref, track(range(0, 11), 0, 150.0, dist=2.5), "dcase2025", 1)
    assert s["F"] == pytest.approx(1.0) and s["DE"] == pytest.approx(50.0) and s["RDE"] == pytest.approx(0.25)


def test_2024_distance_threshold() -> None:
    # Direction right, distance 2.5x off: relative error 1.5 > 1 -> a spatial FP, not a TP.
    ref = track(range(0, 11), 0, 30.0, 20.0, dist=2.0)
    s = score(ref, track(range(0, 11), 0, 30.0, 20.0, dist=5.0), "dcase2024", 1)
    assert s["F"] == 0.0 and s["ER"] == pytest.approx(1.0)
    assert s["DE"] == pytest.approx(3.0) and s["RDE"] == pytest.approx(1.5)
    assert s["LE"] == pytest.approx(QUIRK_ZERO_ANGLE_2024, rel=1e-3)
    # 3.9 m: relative error 0.95 <= 1 -> TP.
    assert score(ref, track(range(0, 11), 0, 30.0, 20.0, dist=3.9), "dcase2024", 1)["F"] == pytest.approx(1.0)
    # No predicted distance is scored as 0 m (what the CSV writer stores): relative error just under 1.
    assert score(ref, track(range(0, 11), 0, 30.0, 20.0, dist=None), "dcase2024", 1)["RDE"] == pytest.approx(1.0)


def test_user_errors() -> None:
    ref = track(range(0, 11), 0, 30.0, dist=None)
    with pytest.raises(SeldEdgeError, match="reference distances"):
        score(ref, ref, "dcase2024", 1)
    with pytest.raises(SeldEdgeError, match="class 3"):
        score(ref, track(range(0, 3), 3, 0.0), "dcase2023", 2)
    with pytest.raises(SeldEdgeError, match="no reference"):
        evaluate([], "dcase2023", 13)


def test_evaluate_dirs_nested_split_folders(tmp_path) -> None:
    rng = np.random.default_rng(3)
    pairs = [_random_pair(rng, num_classes=3, n_frames=45, integer=True) for _ in range(3)]
    ref_root = tmp_path / "metadata_dev"
    for i, (ref, pred) in enumerate(pairs):
        write_events(ref_root / f"dev-test-{i % 2}" / f"mix{i}.csv", ref, form="polar")  # 6 columns, cm
        write_events(tmp_path / "pred" / f"mix{i}.csv", pred)  # 7 columns, Cartesian, m
    write_events(tmp_path / "pred" / "stray.csv", pairs[0][1])  # no reference: ignored
    for metric in ("dcase2023", "dcase2024"):
        from_files = evaluate_dirs(ref_root, tmp_path / "pred", metric=metric, num_classes=3)
        in_memory = evaluate(pairs, metric=metric, num_classes=3)
        # Cartesian CSVs keep 4 decimals, so angles move by ~0.01 degree; counts are unaffected.
        assert from_files == pytest.approx(in_memory, abs=0.02)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeldEdgeError, match="no reference CSV"):
        evaluate_dirs(tmp_path / "empty", tmp_path / "pred")


# --- independent transliteration of the official loops (dict-based, as the baselines are written) ---


def _random_pair(
    rng: np.random.Generator, num_classes: int, n_frames: int, integer: bool = False
) -> tuple[list[Event], list[Event]]:
    """A scene with same-class overlaps and a prediction with noise, misses, shifts and false alarms."""
    ref: list[Event] = []
    for src in range(int(rng.integers(2, 6))):
        cls, onset, length = (
            int(rng.integers(num_classes)),
            int(rng.integers(0, n_frames - 5)),
            int(rng.integers(3, 25)),
        )
        az, el, dist = rng.uniform(-180, 180), rng.uniform(-40, 40), rng.uniform(0.5, 5.0)
        for f in range(onset, min(n_frames, onset + length)):
            a = (az + 3 * (f - onset) + 180) % 360 - 180
            ref.append(Event(f, cls, src, round(a) if integer else a, round(el) if integer else el, round(dist, 2)))
    ref.sort(key=lambda e: e.frame)
    pred: list[Event] = []
    for e in ref:
        if rng.random() < 0.15:
            continue
        frame = e.frame + int(rng.integers(-2, 3)) if rng.random() < 0.1 else e.frame
        noise = 45 if rng.random() < 0.2 else 8
        pred.append(
            Event(max(frame, 0), e.class_index, int(rng.integers(3)), e.azimuth + rng.normal(0, noise),
                  float(np.clip(e.elevation + rng.normal(0, 5), -89, 89)), e.distance * math.exp(rng.normal(0, 0.5)))
        )  # fmt: skip
    for _ in range(int(rng.integers(1, 4))):
        cls, onset, az = int(rng.integers(num_classes)), int(rng.integers(n_frames)), rng.uniform(-180, 180)
        pred += [Event(f, cls, 0, az, 0.0, 2.0) for f in range(onset, min(n_frames + 3, onset + 8))]
    pred.sort(key=lambda e: e.frame)
    return ref, pred


def _frame_dict(events: Sequence[Event]) -> dict[int, list[list]]:
    """load_output_format_file: frame -> [[class, source, azimuth, elevation, distance], ...]."""
    out: dict[int, list[list]] = {}
    for e in events:
        out.setdefault(e.frame, []).append([e.class_index, e.source, e.azimuth, e.elevation, e.distance or 0.0])
    return out


def _segment_labels(frames: dict[int, list[list]], max_frames: int) -> dict[int, dict[int, list]]:
    out: dict[int, dict[int, list]] = {b: {} for b in range(int(np.ceil(max_frames / 10)))}
    for start in range(0, max_frames, 10):
        loc: dict[int, dict[int, list]] = {}
        for frame in range(start, start + 10):
            for value in frames.get(frame, []):
                loc.setdefault(value[0], {}).setdefault(frame - start, []).append(value[1:])
        for cls, per_frame in loc.items():
            out[start // 10][cls] = [list(per_frame.keys()), list(per_frame.values())]
    return out


def _angle_matrix(gt: list[list], pred: list[list]) -> np.ndarray:
    u_gt = polar_to_unit(np.array([v[1] for v in gt]), np.array([v[2] for v in gt]))
    u_pred = polar_to_unit(np.array([v[1] for v in pred]), np.array([v[2] for v in pred]))
    return angular_distance_deg(u_gt[:, None, :], u_pred[None, :, :])


def _official_segment(pairs, num_classes: int, micro: bool) -> dict[str, float]:
    """seld-dcase2023 (macro) / seld-dcase2021 (micro) SELDMetrics.update_seld_scores, transliterated."""
    from scipy.optimize import linear_sum_assignment

    eps = np.finfo(float).eps
    tp, fp, fp_sp, fn, nref, tot, de_tp, de_fn = (np.zeros(num_classes) for _ in range(8))
    sdi = 0
    for ref, pred in pairs:
        gt_d, pred_d = _frame_dict(ref), _frame_dict(pred)
        n = 600 if micro else max(gt_d)
        gt, pr = _segment_labels(gt_d, n), _segment_labels(pred_d, n)
        for b in range(len(gt)):
            loc_fn = loc_fp = 0
            for c in range(num_classes):
                n_gt = max(len(v) for v in gt[b][c][1]) if c in gt[b] else None
                n_pr = max(len(v) for v in pr[b][c][1]) if c in pr[b] else None
                if n_gt is not None:
                    nref[c] += n_gt
                if n_gt is not None and n_pr is not None:
                    dists: dict[int, list[float]] = {}
                    for gi, gf in enumerate(gt[b][c][0]):
                        if gf in pr[b][c][0]:
                            cost = _angle_matrix(gt[b][c][1][gi], pr[b][c][1][pr[b][c][0].index(gf)])
                            for r, k in zip(*linear_sum_assignment(cost), strict=True):
                                dists.setdefault(r, []).append(cost[r, k])
                    if not dists:
                        loc_fn += n_pr
                        fn[c] += n_pr
                        de_fn[c] += n_pr
                        continue
                    for d in dists.values():
                        tot[c] += sum(d) / len(d)
                        de_tp[c] += 1
                        if sum(d) / len(d) <= 20:
                            tp[c] += 1
                        else:
                            loc_fp += 1
                            fp_sp[c] += 1
                    extra_pred, extra_gt = max(0, n_pr - n_gt), max(0, n_gt - n_pr)
                    loc_fp, fp[c], loc_fn, fn[c] = (
                        loc_fp + extra_pred,
                        fp[c] + extra_pred,
                        loc_fn + extra_gt,
                        fn[c] + extra_gt,
                    )
                    de_fn[c] += extra_gt
                elif n_gt is not None:
                    loc_fn, fn[c], de_fn[c] = loc_fn + n_gt, fn[c] + n_gt, de_fn[c] + n_gt
                elif n_pr is not None:
                    loc_fp, fp[c] = loc_fp + n_pr, fp[c] + n_pr
            sdi += max(loc_fp, loc_fn)  # S + D + I of the block
    er = sdi / (nref.sum() + eps)
    if micro:
        f = tp.sum() / (eps + tp.sum() + 0.5 * (fp.sum() + fp_sp.sum() + fn.sum()))
        le = tot.sum() / (de_tp.sum() + eps) if de_tp.sum() else 180
        lr = de_tp.sum() / (eps + de_tp.sum() + de_fn.sum())
        return {"ER": er, "F": f, "LE": le, "LR": lr, "SELD": np.mean([er, 1 - f, le / 180, 1 - lr])}
    f = tp / (eps + tp + fp_sp + 0.5 * (fp + fn))
    le = np.where(de_tp == 0, 180.0, tot / (de_tp + eps))
    lr = de_tp / (eps + de_tp + de_fn)
    seld = np.mean([np.repeat(er, num_classes), 1 - f, le / 180, 1 - lr], axis=0)
    return {"ER": er, "F": f.mean(), "LE": le.mean(), "LR": lr.mean(), "SELD": seld.mean()}


def _official_frame(pairs, num_classes: int, stereo: bool) -> dict[str, float]:
    """DCASE2024 / DCASE2025 baseline SELDMetrics.update_seld_scores (frame level), transliterated."""
    from scipy.optimize import linear_sum_assignment

    eps = np.finfo(float).eps
    tp, fp, fp_sp, fn, nref, ang, dist, rel, de_tp, de_fn = (np.zeros(num_classes) for _ in range(10))
    sdi = 0
    scale = 100.0 if stereo else 1.0
    for ref, pred in pairs:
        gt_d, pred_d = _frame_dict(ref), _frame_dict(pred)
        n = max(gt_d)
        for frame in range(n):
            loc_fn = loc_fp = 0
            for c in range(num_classes):
                g = [v for v in gt_d.get(frame, []) if v[0] == c]
                p = [v for v in pred_d.get(frame, []) if v[0] == c]
                nref[c] += len(g)
                if g and p:
                    if stereo:
                        fold = lambda a: np.array([(180 - x) if x > 90 else (-180 - x) if x < -90 else x for x in a])  # noqa: E731
                        wrap = lambda vs: (np.array([v[2] for v in vs]) + 180) % 360 - 180  # noqa: E731
                        cost = np.abs(fold(wrap(g))[:, None] - fold(wrap(p))[None, :])
                    else:
                        ug = polar_to_unit(np.array([v[2] for v in g]), np.array([v[3] for v in g]))
                        up = polar_to_unit(np.array([v[2] for v in p]), np.array([v[3] for v in p]))
                        norm = lambda u: np.sqrt((u**2).sum(-1) + 1e-10)  # noqa: E731
                        cost = np.degrees(
                            np.arccos(np.clip((ug @ up.T) / norm(ug)[:, None] / norm(up)[None, :], -1, 1))
                        )
                    rows, cols = linear_sum_assignment(cost)
                    d_err = np.abs(np.array([g[r][4] for r in rows]) - np.array([p[k][4] for k in cols])) * scale
                    r_err = d_err / (np.array([g[r][4] for r in rows]) * scale + eps)
                    failed = int(np.sum((cost[rows, cols] > 20) | (r_err > 1)))
                    k = min(len(g), len(p))
                    ang[c], dist[c], rel[c] = (
                        ang[c] + cost[rows, cols].sum(),
                        dist[c] + d_err.sum(),
                        rel[c] + r_err.sum(),
                    )
                    tp[c], de_tp[c], fp_sp[c] = tp[c] + k - failed, de_tp[c] + k, fp_sp[c] + failed
                    fp[c] += max(0, len(p) - len(g))
                    fn[c] += max(0, len(g) - len(p))
                    de_fn[c] += max(0, len(g) - len(p))
                    loc_fp += max(0, len(p) - len(g)) + failed
                    loc_fn += max(0, len(g) - len(p))
                elif g:
                    loc_fn, fn[c], de_fn[c] = loc_fn + len(g), fn[c] + len(g), de_fn[c] + len(g)
                elif p:
                    loc_fp, fp[c] = loc_fp + len(p), fp[c] + len(p)
            sdi += max(loc_fp, loc_fn)
    f = tp / (eps + tp + fp_sp + 0.5 * (fp + fn))
    mean = lambda total: np.where(de_tp == 0, np.nan, total / (de_tp + eps))  # noqa: E731
    ae, de, rde = mean(ang), mean(dist), mean(rel)
    if stereo:
        return {"F": f.mean(), "AE": np.nanmean(ae), "DE": np.nanmean(de), "RDE": np.nanmean(rde)}
    seld = np.nanmean([1 - f, ae / 180, rde], axis=0)
    lr = de_tp / (eps + de_tp + de_fn)
    return {
        "ER": sdi / (nref.sum() + eps), "F": f.mean(), "LE": np.nanmean(ae), "LR": lr.mean(),
        "SELD": seld.mean(), "DE": np.nanmean(de), "RDE": np.nanmean(rde),
    }  # fmt: skip


@pytest.mark.parametrize("metric", METRICS)
def test_matches_transliteration_of_official_loops(metric: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(4):
        num_classes = int(rng.integers(1, 5))
        pairs = [_random_pair(rng, num_classes, int(rng.integers(20, 90))) for _ in range(3)]
        if metric in ("dcase2021", "dcase2023"):
            expected = _official_segment(pairs, num_classes, micro=metric == "dcase2021")
        else:
            expected = _official_frame(pairs, num_classes, stereo=metric == "dcase2025")
        got = evaluate(pairs, metric=metric, num_classes=num_classes)
        assert set(got) == set(expected)
        assert got == pytest.approx({k: float(v) for k, v in expected.items()}, rel=1e-9, abs=1e-9, nan_ok=True)

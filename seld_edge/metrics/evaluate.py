"""Entry points: score in-memory events (training validation) or folders of CSVs (``seld-edge eval``).

Both paths feed the same scorers one file at a time, so a model validated in training and the same
predictions written to disk and evaluated from the command line get the same numbers.

Deliberate differences from the official scripts, all about files rather than arithmetic: a
reference without a prediction is scored as an empty prediction (the official scripts skip it, which
flatters a system that fails on some files), predictions without a reference are ignored (the
official scripts crash), and class indices outside ``num_classes`` are refused with a clear error
(the official code silently drops them).
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from seld_edge.errors import SeldEdgeError
from seld_edge.formats.dataset import find_csvs
from seld_edge.formats.dcase_csv import Event, read_events
from seld_edge.metrics.common import Scorer
from seld_edge.metrics.frame import FrameScorer
from seld_edge.metrics.segment import SegmentScorer

METRICS = ("dcase2021", "dcase2023", "dcase2024", "dcase2025")


def make_scorer(metric: str, num_classes: int) -> Scorer:
    """The scorer for a metric name; ValueError for an unknown name."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if metric == "dcase2021":
        return SegmentScorer(num_classes, dcase2021=True)
    if metric == "dcase2023":
        return SegmentScorer(num_classes)
    if metric == "dcase2024":
        return FrameScorer(num_classes)
    if metric == "dcase2025":
        return FrameScorer(num_classes, stereo=True)
    raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")


def selection_score(scores: Mapping[str, float]) -> float:
    """Lower is better: the SELD score where the metric has one (dcase2021-2024), else 1 - F (dcase2025,
    whose ranking metric is F). It picks the best checkpoint, tunes thresholds and compares runs.

    A NaN SELD (the 2024 metric with nothing matched at all) counts as the worst possible.
    """
    if "SELD" in scores:
        return math.inf if math.isnan(scores["SELD"]) else float(scores["SELD"])
    return 1.0 - float(scores["F"])


def selection_name(metric: str) -> str:
    """What :func:`selection_score` reports for a metric: "SELD", or "1-F" for dcase2025."""
    return "1-F" if metric == "dcase2025" else "SELD"


def _check_classes(events: Sequence[Event], num_classes: int, where: str) -> None:
    for event in events:
        if not 0 <= event.class_index < num_classes:
            raise SeldEdgeError(
                f"{where}: class {event.class_index} in frame {event.frame} is outside 0..{num_classes - 1}"
            )


def evaluate(
    pairs: Iterable[tuple[Sequence[Event], Sequence[Event]]],
    metric: str = "dcase2023",
    num_classes: int = 13,
) -> dict[str, float]:
    """Score (reference events, predicted events) pairs, one pair per file.

    Keys: dcase2021/dcase2023 ER, F, LE, LR, SELD; dcase2024 adds DE (metres) and RDE; dcase2025
    F, AE, DE (centimetres), RDE. F and LR are fractions, LE/AE degrees. Values may be NaN only where
    the official code gives NaN (2024/2025 errors when nothing was matched at all).
    Events need distances (metres) for dcase2024/2025 references.
    """
    scorer = make_scorer(metric, num_classes)
    n_files = 0
    for n_files, (reference, prediction) in enumerate(pairs, start=1):
        _check_classes(reference, num_classes, f"reference {n_files}")
        _check_classes(prediction, num_classes, f"prediction {n_files}")
        scorer.update(reference, prediction)
    if n_files == 0:
        raise SeldEdgeError("nothing to evaluate: no reference files")
    return scorer.scores()


def evaluate_dirs(
    ref_dir: str | Path,
    pred_dir: str | Path,
    metric: str = "dcase2023",
    num_classes: int = 13,
) -> dict[str, float]:
    """Score the CSVs under PRED_DIR against those under REF_DIR (both searched recursively).

    Files are paired by name, so a flat prediction folder can be scored against ``metadata_dev`` with
    its split subfolders. References are read as metadata (distances in cm), predictions as model
    output (distances in m); see :func:`seld_edge.formats.dcase_csv.read_events`.
    """
    scorer = make_scorer(metric, num_classes)
    references = find_csvs(ref_dir)
    if not references:
        raise SeldEdgeError(f"{ref_dir}: no reference CSV files")
    predictions = find_csvs(pred_dir)
    for stem, ref_path in sorted(references.items()):
        reference = read_events(ref_path, reference=True, num_classes=num_classes)
        pred_path = predictions.get(stem)
        prediction = [] if pred_path is None else read_events(pred_path, reference=False, num_classes=num_classes)
        try:
            scorer.update(reference, prediction)
        except SeldEdgeError as err:
            raise SeldEdgeError(f"{ref_path}: {err}") from None
    return scorer.scores()

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seld_edge.errors import SeldEdgeError
from seld_edge.formats.classes import STARSS23_CLASSES
from seld_edge.formats.dataset import find_csvs
from seld_edge.formats.dcase_csv import STEREO_HEADER, Event, read_events
from seld_edge.metrics.axes import AxisAgreement, AxisAgreementCounter
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


@dataclass
class EvaluationReport:
    """What ``seld-edge eval`` prints: the official scores, per-class results, and what to question.

    ``per_class`` maps each column (the keys :meth:`per_class` of the scorer gives) to one value per
    class; None for dcase2021, which is micro-averaged. ``warnings`` name what makes the scores doubtful
    (missing predictions, a data form the metric was not made for); ``notes`` explain a number that
    looks wrong but is the official one (absent classes in the macro average). Neither changes a score.
    """

    scores: dict[str, float]
    per_class: dict[str, np.ndarray] | None
    axes: AxisAgreement | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def evaluate_dirs(
    ref_dir: str | Path,
    pred_dir: str | Path,
    metric: str = "dcase2023",
    num_classes: int = 13,
) -> dict[str, float]:
    """Score the CSVs under PRED_DIR against those under REF_DIR (both searched recursively).

    Files are paired by name, so a flat prediction folder can be scored against ``metadata_dev`` with
    its split subfolders. References are read as metadata (distances in cm), predictions as model
    output (distances in m); see :func:`seld_edge.formats.dcase_csv.read_events`. The checks and
    warnings are those of :func:`evaluation_report`.
    """
    return evaluation_report(ref_dir, pred_dir, metric, num_classes).scores


def evaluation_report(
    ref_dir: str | Path,
    pred_dir: str | Path,
    metric: str = "dcase2023",
    num_classes: int = 13,
    class_names: Sequence[str] = STARSS23_CLASSES,
) -> EvaluationReport:
    """:func:`evaluate_dirs` with per-class results and what to question about the input.

    Errors (SeldEdgeError): no references; no predictions at all (an empty or wrong folder would
    otherwise score as a system that detects nothing); predictions and references in different
    forms (DCASE 2025 stereo on one side, FOA/MIC on the other) under a 2021-2024 metric, which
    compares azimuths on the full circle, so the front-folded azimuths of one side make every rear
    source a localization error of the form, not of the system.

    Warnings: references without a prediction (scored as empty predictions), predictions without a
    reference (not scored), the form mismatch under dcase2025 (which folds both sides, so the numbers
    hold if the files are of the same clips), dcase2025 on FOA/MIC references (it drops elevation and
    front/back: not the FOA task's scores) and dcase2021-2024 on stereo references (not the 2025 task's
    metric, so not comparable with its published results).
    """
    scorer = make_scorer(metric, num_classes)
    references = find_csvs(ref_dir)
    if not references:
        raise SeldEdgeError(f"{ref_dir}: no reference CSV files")
    predictions = find_csvs(pred_dir)
    if not predictions:
        raise SeldEdgeError(f"{pred_dir}: no prediction CSV files")
    report = EvaluationReport({}, None)
    missing = [stem for stem in references if stem not in predictions]
    if missing:
        report.warnings.append(
            f"{len(missing)} of {len(references)} references have no prediction in {pred_dir} "
            f"(e.g. {missing[0]}.csv); they are scored as empty predictions"
        )
    stray = [stem for stem in predictions if stem not in references]
    if stray:
        report.warnings.append(f"{len(stray)} predictions have no reference (e.g. {stray[0]}.csv); not scored")
    _check_forms(references, predictions, metric, report)
    present: set[int] = set()
    axes = AxisAgreementCounter()
    for stem, ref_path in sorted(references.items()):
        reference = read_events(ref_path, reference=True, num_classes=num_classes)
        present.update(e.class_index for e in reference)
        pred_path = predictions.get(stem)
        prediction = [] if pred_path is None else read_events(pred_path, reference=False, num_classes=num_classes)
        try:
            scorer.update(reference, prediction)
        except SeldEdgeError as err:
            raise SeldEdgeError(f"{ref_path}: {err}") from None
        axes.update(reference, prediction)
    report.scores = scorer.scores()
    report.axes = axes.result()
    if metric != "dcase2021":
        report.per_class = scorer.per_class()
        absent = [i for i in range(num_classes) if i not in present]
        if absent:
            names = ", ".join(class_names[i] if i < len(class_names) else f"class {i}" for i in absent)
            bound = (num_classes - len(absent)) / num_classes
            report.notes.append(
                f"{len(absent)} of {num_classes} classes never occur in the references ({names}); the official "
                f"macro average counts each as F 0, so F is at most {bound:.4f} here"
            )
    return report


_FORM_NAMES = {"stereo": "DCASE 2025 stereo", "foa": "FOA/MIC"}


def csv_form(path: Path) -> str | None:
    """ "stereo" for a CSV with the DCASE 2025 header, "foa" for one with rows and no header (the FOA and
    MIC forms), None for an empty or unreadable file (read_events reports the latter)."""
    try:
        with open(path) as handle:
            first = next((line for line in handle if line.strip()), "")
    except (OSError, UnicodeDecodeError):
        return None
    if not first:
        return None
    return "stereo" if tuple(f.strip().lower() for f in first.split(",")) == STEREO_HEADER else "foa"


def _check_forms(
    references: dict[str, Path], predictions: dict[str, Path], metric: str, report: EvaluationReport
) -> None:
    """The errors and warnings about data forms of :func:`evaluation_report`'s docstring."""
    ref_forms = {stem: csv_form(path) for stem, path in references.items()}
    mismatched = [
        (stem, ref_forms[stem], form)
        for stem, path in predictions.items()
        if stem in ref_forms and None not in (ref_forms[stem], form := csv_form(path)) and form != ref_forms[stem]
    ]
    if mismatched:
        stem, ref_form, pred_form = mismatched[0]
        what = (
            f"{len(mismatched)} predictions are in the {_FORM_NAMES[pred_form]} form and their references in the "
            f"{_FORM_NAMES[ref_form]} form (e.g. {stem}.csv)"
        )
        if metric != "dcase2025":
            raise SeldEdgeError(
                f"{what}: {metric} compares azimuths on the full circle, so azimuths folded to the front on one side "
                "only make its localization scores meaningless; pair predictions with references of the same form, "
                "or score with --metric dcase2025"
            )
        report.warnings.append(f"{what}; dcase2025 folds both to the front: check that they are of the same clips")
    forms = set(ref_forms.values())
    if metric == "dcase2025" and "foa" in forms:
        report.warnings.append(
            "the references are FOA/MIC data: dcase2025 folds azimuths to the front and ignores elevation, so these "
            "are not scores of the FOA task (use dcase2023 or dcase2024)"
        )
    if metric != "dcase2025" and "stereo" in forms:
        report.warnings.append(
            f"the references are DCASE 2025 stereo data, whose metric is dcase2025: {metric} scores of them are not "
            "comparable with published results"
        )

"""DCASE task 3 SELD metrics, computed as the official evaluation code computes them (quirks included).

``dcase2021``: segment level, micro (TAU-NIGENS). ``dcase2023``: segment level, macro (STARSS22/23).
``dcase2024``: frame level with distance. ``dcase2025``: frame level, stereo (folded azimuth, cm).
One definition used by training validation (:func:`evaluate`), the CLI (:func:`evaluate_dirs`) and
parity checks. Torch-free.
"""

from seld_edge.metrics.evaluate import (
    METRICS,
    evaluate,
    evaluate_dirs,
    evaluation_report,
    make_scorer,
    selection_name,
    selection_score,
)

__all__ = [
    "METRICS",
    "evaluate",
    "evaluate_dirs",
    "evaluation_report",
    "make_scorer",
    "selection_name",
    "selection_score",
]

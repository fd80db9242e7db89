"""Predictions against the reference for one clip, drawn like the figures of the SELD papers.

Three stacked panels share the time axis: activity per class, azimuth and elevation. The reference is
drawn light and large (thick bars, big circles) and the prediction dark and small (thin bars,
crosses) on top of it, so a correct prediction sits inside its reference and a miss or a false alarm
stands alone. Each class keeps one colour across clips (picked by class index) so figures compare.

matplotlib is an optional extra (``seld-edge[plot]``): the edge runtime must install without it, so
it is imported only when a figure is drawn.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seld_edge.errors import SeldEdgeError
from seld_edge.formats.dcase_csv import Event
from seld_edge.io import atomic_write

FIGURE_SIZE_IN = (12.0, 8.0)
DPI = 120
LIGHTEN = 0.55  # share of white blended into a class colour for the reference
# tab10 and three more hues far enough from it: the 13 STARSS23 classes get distinct colours.
EXTRA_COLOURS = ("#393b79", "#e7ba52", "#637939")


def plot_clip(
    reference: Sequence[Event],
    prediction: Sequence[Event],
    out_path: str | Path,
    title: str,
    class_names: Sequence[str],
    label_hop_s: float = 0.1,
) -> None:
    """Draw ``prediction`` over ``reference`` and save the figure as a PNG at ``out_path``.

    The figure is ``FIGURE_SIZE_IN`` at ``DPI`` (1440 x 960 pixels) whatever the clip length, so a
    folder of plots can be flicked through. Only classes present in either list get a row and a
    legend entry; a class index beyond ``class_names`` is labelled ``class N`` rather than refused,
    since a picture of an odd file is what a user needs to find out what is wrong with it.
    """
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError:
        raise SeldEdgeError("plotting needs matplotlib: install seld-edge[plot] (matplotlib)") from None

    palette = [matplotlib.colors.to_rgb(c) for c in (*matplotlib.colormaps["tab10"].colors, *EXTRA_COLOURS)]
    classes = sorted({e.class_index for e in (*reference, *prediction)})
    last_frame = max((e.frame for e in (*reference, *prediction)), default=0)
    duration_s = (last_frame + 1) * label_hop_s

    def name(class_index: int) -> str:
        return class_names[class_index] if class_index < len(class_names) else f"class {class_index}"

    def dark(class_index: int) -> tuple[float, float, float]:
        return palette[class_index % len(palette)]

    def light(class_index: int) -> tuple[float, float, float]:
        return tuple(float(c) for c in np.add(np.multiply(dark(class_index), 1.0 - LIGHTEN), LIGHTEN))

    # Figure + FigureCanvasAgg rather than pyplot: always the non-interactive Agg backend, without
    # touching pyplot's global backend or figure list (nothing to close, safe in a notebook).
    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    activity_ax, azimuth_ax, elevation_ax = fig.subplots(3, 1, sharex=True)

    row = {class_index: len(classes) - 1 - i for i, class_index in enumerate(classes)}  # first class on top
    for events, height, colour in ((reference, 0.7, light), (prediction, 0.22, dark)):
        for class_index in classes:
            frames = sorted({e.frame for e in events if e.class_index == class_index})
            spans = [(start * label_hop_s, (stop - start) * label_hop_s) for start, stop in _runs(frames)]
            activity_ax.broken_barh(spans, (row[class_index] - height / 2, height), color=colour(class_index))
    activity_ax.set_yticks(list(row.values()), [name(c) for c in row])
    activity_ax.set_ylim(-0.6, max(len(classes), 1) - 0.4)
    activity_ax.set_ylabel("activity")
    if not classes:
        activity_ax.text(0.5, 0.5, "no events", transform=activity_ax.transAxes, ha="center", va="center")

    for ax, angle, limit in ((azimuth_ax, "azimuth", 180), (elevation_ax, "elevation", 90)):
        for events, colour, style in (
            (reference, light, {"marker": "o", "s": 40, "linewidths": 0.0}),
            (prediction, dark, {"marker": "x", "s": 14, "linewidths": 1.0}),
        ):
            if events:
                ax.scatter(
                    [(e.frame + 0.5) * label_hop_s for e in events],
                    [getattr(e, angle) for e in events],
                    c=[colour(e.class_index) for e in events],
                    **style,
                )
        ax.set_ylim(-limit * 1.05, limit * 1.05)
        ax.set_yticks(np.arange(-limit, limit + 1, limit // 2))
        ax.set_ylabel(f"{angle} (°)")

    for ax in (activity_ax, azimuth_ax, elevation_ax):
        ax.grid(True, color="0.9", linewidth=0.8)
        ax.set_axisbelow(True)
    elevation_ax.set_xlim(0.0, duration_s)
    elevation_ax.set_xlabel("time (s)")
    activity_ax.set_title(title)

    key = [
        Line2D([], [], color="0.7", marker="o", markersize=8, linewidth=6, label="reference"),
        Line2D([], [], color="0.15", marker="x", markersize=6, linewidth=1.5, label="prediction"),
    ]
    activity_ax.legend(handles=key, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    class_key = [Patch(color=dark(c), label=name(c)) for c in classes]
    if class_key:
        azimuth_ax.legend(handles=class_key, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    atomic_write(out_path, lambda handle: fig.savefig(handle, format="png", dpi=DPI))


def _runs(frames: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted frame indices as [start, stop) runs of consecutive frames: one bar per run, not per frame."""
    runs: list[tuple[int, int]] = []
    for frame in frames:
        if runs and runs[-1][1] == frame:
            runs[-1] = (runs[-1][0], frame + 1)
        else:
            runs.append((frame, frame + 1))
    return runs

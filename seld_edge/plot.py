"""Predictions against the reference for one clip, drawn like the figures of the SELD papers.

Stacked panels share the time axis: activity per class, azimuth, elevation (FOA and MIC data) and
distance (when the data has distances). The reference is
drawn light and large (thick bars, big circles) and the prediction dark and small (thin bars,
crosses) on top of it, so a correct prediction sits inside its reference and a miss or a false alarm
stands alone. Each class keeps one colour across clips (picked by class index) so figures compare.

matplotlib is an optional extra (``seld-edge[plot]``): the edge runtime must install without it, so
it is imported only when a figure is drawn.
"""

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seld_edge.errors import SeldEdgeError
from seld_edge.formats.dcase_csv import Event
from seld_edge.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_SIZE_IN = (12.0, 8.0)
DPI = 120
LIGHTEN = 0.55  # share of white blended into a class colour for the reference
# tab10 and three more hues far enough from it: the 13 STARSS23 classes get distinct colours.
EXTRA_COLOURS = ("#393b79", "#e7ba52", "#637939")


def plot_clip(
    reference: Sequence[Event],
    prediction: Sequence[Event] | None,
    out_path: str | Path,
    title: str,
    class_names: Sequence[str],
    **options: Any,
) -> None:
    """Draw ``prediction`` over ``reference`` (:func:`clip_figure`, with its options) and save it as a PNG."""
    save_png(clip_figure(reference, prediction, title, class_names, **options), out_path)


def save_png(fig: "Figure", out_path: str | Path) -> None:
    """Write the figure atomically: a failed write leaves no partial file."""
    atomic_write(out_path, lambda handle: fig.savefig(handle, format="png", dpi=DPI))


def clip_figure(
    reference: Sequence[Event],
    prediction: Sequence[Event] | None,
    title: str,
    class_names: Sequence[str],
    label_hop_s: float = 0.1,
    stereo: bool = False,
    duration_s: float | None = None,
    scores: Mapping[str, float] | None = None,
) -> "Figure":
    """The figure of ``prediction`` drawn over ``reference``.

    The figure is ``FIGURE_SIZE_IN`` at ``DPI`` (1440 x 960 pixels) whatever the clip length, so a
    folder of plots can be flicked through. Only classes present in either list get a row and a
    legend entry; a class index beyond ``class_names`` is labelled ``class N`` rather than refused,
    since a picture of an odd file is what a user needs to find out what is wrong with it.

    Panels: activity, azimuth (-180..180, or -90..90 for ``stereo`` data, whose azimuths are folded to
    the front), elevation (not for stereo, which has none) and distance (when either side has one).
    ``prediction`` None means no prediction file, [] an empty one: both are written on the activity
    panel. The time axis runs to ``duration_s`` (the clip's length; default: the last event), and
    ``scores`` go into the title.
    """
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError:
        raise SeldEdgeError("plotting needs matplotlib: install seld-edge[plot] (matplotlib)") from None

    predicted = [] if prediction is None else list(prediction)
    palette = [matplotlib.colors.to_rgb(c) for c in (*matplotlib.colormaps["tab10"].colors, *EXTRA_COLOURS)]
    classes = sorted({e.class_index for e in (*reference, *predicted)})
    last_frame = max((e.frame for e in (*reference, *predicted)), default=0)
    duration_s = max(duration_s or 0.0, (last_frame + 1) * label_hop_s)

    def name(class_index: int) -> str:
        return class_names[class_index] if class_index < len(class_names) else f"class {class_index}"

    def dark(class_index: int) -> tuple[float, float, float]:
        return palette[class_index % len(palette)]

    def light(class_index: int) -> tuple[float, float, float]:
        return tuple(float(c) for c in np.add(np.multiply(dark(class_index), 1.0 - LIGHTEN), LIGHTEN))

    # (attribute, axis label, limit or None for 0..max): the panels below activity.
    panels = [("azimuth", "azimuth (°)", 90 if stereo else 180)]
    if not stereo:
        panels.append(("elevation", "elevation (°)", 90))
    if any(has_distance(events) for events in (reference, predicted)):
        panels.append(("distance", "distance (m)", None))

    # Figure + FigureCanvasAgg rather than pyplot: always the non-interactive Agg backend, without
    # touching pyplot's global backend or figure list (nothing to close, safe in a notebook).
    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    activity_ax, *value_axes = fig.subplots(1 + len(panels), 1, sharex=True)

    row = {class_index: len(classes) - 1 - i for i, class_index in enumerate(classes)}  # first class on top
    for events, height, colour in ((reference, 0.7, light), (predicted, 0.22, dark)):
        for class_index in classes:
            frames = sorted({e.frame for e in events if e.class_index == class_index})
            spans = [(start * label_hop_s, (stop - start) * label_hop_s) for start, stop in _runs(frames)]
            activity_ax.broken_barh(spans, (row[class_index] - height / 2, height), color=colour(class_index))
    activity_ax.set_yticks(list(row.values()), [name(c) for c in row])
    activity_ax.set_ylim(-0.6, max(len(classes), 1) - 0.4)
    activity_ax.set_ylabel("activity")
    notice = {None: "no prediction file", 0: "empty prediction: no events"}.get(
        None if prediction is None else len(predicted)
    )
    if not classes:
        notice = "no events" if notice is None else f"no reference events; {notice}"
    if notice is not None:
        activity_ax.text(0.5, 0.5, notice, transform=activity_ax.transAxes, ha="center", va="center",
                         fontsize=14, color="0.3", bbox={"facecolor": "white", "edgecolor": "0.6"})  # fmt: skip

    for ax, (attribute, label, limit) in zip(value_axes, panels, strict=True):
        for events, colour, style in (
            (reference, light, {"marker": "o", "s": 40, "linewidths": 0.0}),
            (predicted, dark, {"marker": "x", "s": 14, "linewidths": 1.0}),
        ):
            drawn = [e for e in events if attribute != "distance" or has_distance([e])]
            if drawn:
                ax.scatter(
                    [(e.frame + 0.5) * label_hop_s for e in drawn],
                    [getattr(e, attribute) for e in drawn],
                    c=[colour(e.class_index) for e in drawn],
                    **style,
                )
        if limit is not None:
            ax.set_ylim(-limit * 1.05, limit * 1.05)
            ax.set_yticks(np.arange(-limit, limit + 1, limit // 2))
        else:
            ax.set_ylim(bottom=0.0)
        ax.set_ylabel(label)

    for ax in (activity_ax, *value_axes):
        ax.grid(True, color="0.9", linewidth=0.8)
        ax.set_axisbelow(True)
    value_axes[-1].set_xlim(0.0, duration_s)
    value_axes[-1].set_xlabel("time (s)")
    if scores:
        title = f"{title}\n" + "   ".join(f"{k} {v:.2f}" if abs(v) >= 10 else f"{k} {v:.3f}" for k, v in scores.items())
    activity_ax.set_title(title)

    key = [
        Line2D([], [], color="0.7", marker="o", markersize=8, linewidth=6, label="reference"),
        Line2D([], [], color="0.15", marker="x", markersize=6, linewidth=1.5, label="prediction"),
    ]
    activity_ax.legend(handles=key, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    class_key = [Patch(color=dark(c), label=name(c)) for c in classes]
    if class_key:
        value_axes[0].legend(handles=class_key, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def has_distance(events: Sequence[Event]) -> bool:
    """Whether any event carries a distance: a model without a distance output writes 0 (the CSV form
    has the column), which is no distance."""
    return any(e.distance is not None and e.distance > 0 for e in events)


def training_figure(metrics_csv: str | Path, title: str) -> "Figure":
    """The training curves of a run (its metrics.csv, one row per epoch): loss and learning rate,
    the fraction scores (ER, F, LR, SELD, RDE), and the errors in degrees and distance; the best epoch
    (lowest SELD, or highest F where there is no SELD) is marked."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise SeldEdgeError("plotting needs matplotlib: install seld-edge[plot] (matplotlib)") from None
    columns = _read_metrics(metrics_csv)
    epochs = columns.pop("epoch")
    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    loss_ax, score_ax, error_ax = fig.subplots(3, 1, sharex=True)
    loss_ax.plot(epochs, columns["train_loss"], color="tab:blue", label="train loss")
    loss_ax.set_ylabel("train loss")
    lr_ax = loss_ax.twinx()
    lr_ax.plot(epochs, columns["lr"], color="0.6", linestyle="--", label="learning rate")
    lr_ax.set_ylabel("learning rate")
    for key in ("ER", "F", "LR", "SELD", "RDE"):
        if key in columns:
            score_ax.plot(epochs, columns[key], marker=".", label=key)
    score_ax.set_ylim(0.0, max(1.05, *(np.nanmax(columns[k]) * 1.05 for k in ("ER", "RDE") if k in columns)))
    score_ax.set_ylabel("validation score")
    for key, label in (("LE", "LE (°)"), ("AE", "AE (°)"), ("DE", "DE")):
        if key in columns:
            error_ax.plot(epochs, columns[key], marker=".", label=label)
    error_ax.set_ylabel("validation error")
    error_ax.set_xlabel("epoch")
    if "SELD" in columns or "F" in columns:
        selection = columns["SELD"] if "SELD" in columns else -columns["F"]
        best = int(np.nanargmin(selection))
        summary = "  ".join(f"{k} {columns[k][best]:.3f}" for k in ("SELD", "F") if k in columns)
        title = f"{title}: best epoch {epochs[best]:.0f} of {len(epochs)} ({summary})"
        for ax in (loss_ax, score_ax, error_ax):
            ax.axvline(epochs[best], color="0.5", linewidth=0.8, linestyle=":")
    for ax in (loss_ax, score_ax, error_ax):
        ax.grid(True, color="0.9", linewidth=0.8)
        ax.legend(loc="upper left", bbox_to_anchor=(1.08, 1.0), frameon=False)
    lr_ax.legend(loc="lower left", bbox_to_anchor=(1.08, 0.0), frameon=False)
    loss_ax.set_title(title)
    fig.tight_layout()
    return fig


def _read_metrics(path: str | Path) -> dict[str, np.ndarray]:
    """metrics.csv as float columns; one line on a missing or malformed file."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        columns = {key: np.array([float(r[key]) for r in rows]) for key in (rows[0] if rows else {})}
    except (OSError, ValueError, TypeError) as err:
        raise SeldEdgeError(f"{path}: cannot read training metrics ({err})") from None
    if not rows or not {"epoch", "train_loss", "lr"} <= set(columns):
        raise SeldEdgeError(f"{path}: no epochs logged (expected the columns epoch, train_loss, lr)")
    return columns


def _runs(frames: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted frame indices as [start, stop) runs of consecutive frames: one bar per run, not per frame."""
    runs: list[tuple[int, int]] = []
    for frame in frames:
        if runs and runs[-1][1] == frame:
            runs[-1] = (runs[-1][0], frame + 1)
        else:
            runs.append((frame, frame + 1))
    return runs

"""Post-processing from raw model outputs to events, shared unchanged by ``seld-edge predict`` and the runtime.

The steps are those of M2M-AST and Stereo-RCnet: a clip longer than the model's input is cut into
overlapping windows whose outputs are averaged (:func:`window_starts`, :func:`overlap_average`;
seld_edge.inference runs them, with optional test-time augmentation through the output format's
transforms); a median filter along time; per-class activity thresholds, tuned on validation data
(:func:`tune_thresholds`); and the output format's decoding (for multi-ACCDOA, merging same-class
tracks closer than 15 degrees). :class:`PostProcessing` holds the settings and travels with
checkpoints and exported models, so PyTorch and ONNX/TensorRT runs of one model write the same CSV.
Numpy and scipy only: the runtime imports this without torch.

Units. Windows are cut and averaged in the model's label frames (its output frames); each input's
features are cut at the same label frames, r feature frames each (r whole, from the feature hop and
the label rate). Median filter, thresholds and decoding act on the 100 ms DCASE grid, after
seld_edge.formats.label_rate has put a model's outputs there.
"""

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
from scipy import ndimage

from seld_edge.errors import SeldEdgeError, unknown_name
from seld_edge.formats.dcase_csv import Event
from seld_edge.formats.output_format import OutputFormat, class_thresholds
from seld_edge.metrics import evaluate, selection_score

ACTIVITY_THRESHOLD = 0.5
UNIFY_DEG = 15.0
THRESHOLD_GRID = np.arange(0.1, 0.95, 0.05)
"""Thresholds tried per class by :func:`tune_thresholds`: 0.10, 0.15, ..., 0.90."""


# --------------------------------------------------------------------------------------------------
# sliding windows


def window_starts(n_frames: int, window: int, hop: int) -> list[int]:
    """Start frames of the windows that cover a clip of n_frames, every hop frames.

    The last window is aligned to the end of the clip rather than run past it, so no window is mostly
    padding; it overlaps its neighbour more than hop implies, which :func:`overlap_average` handles.
    A clip no longer than the window gets one window at 0, which the caller pads up to the window.
    Any unit works; the module docstring says which makes feature and label frames line up.
    """
    if n_frames < 1 or window < 1 or hop < 1:
        raise ValueError(f"n_frames, window and hop must be positive, got {n_frames}, {window}, {hop}")
    if hop > window:
        raise ValueError(f"hop {hop} is longer than the window {window}: frames between windows would get no output")
    if n_frames <= window:
        return [0]
    return [*range(0, n_frames - window, hop), n_frames - window]


def label_starts(starts: Sequence[int], frames_per_label: int) -> list[int]:
    """Window starts in feature frames converted to label frames (frames_per_label feature frames each).

    A start inside a label frame would shift that window's outputs by a fraction of a frame, so it
    is refused rather than rounded: pad the clip and pick window and hop as the module docstring says.
    """
    if frames_per_label < 1:
        raise ValueError(f"frames_per_label must be positive, got {frames_per_label}")
    misaligned = [s for s in starts if s % frames_per_label]
    if misaligned:
        raise ValueError(
            f"window starts {misaligned} are not multiples of {frames_per_label} feature frames per label frame"
        )
    return [s // frames_per_label for s in starts]


def overlap_average(outputs: Sequence[np.ndarray], starts: Sequence[int], n_frames: int) -> np.ndarray:
    """One (n_frames, ...) output for a clip from the outputs (T_w, ...) of windows starting at starts.

    Outputs and starts are in label (output) frames. Where windows overlap their outputs are averaged,
    which smooths the predictions near window edges, where a model sees the least context. Frames past
    n_frames come from padding and are dropped. Float32 outputs stay float32. (:class:`OverlapAverage`
    computes the same window by window.)
    """
    arrays = [np.asarray(output) for output in outputs]
    if not arrays or len(arrays) != len(starts):
        raise ValueError(f"need one start per window output, got {len(arrays)} outputs and {len(starts)} starts")
    average = OverlapAverage(n_frames)
    for start, array in sorted(zip(starts, arrays, strict=True), key=lambda pair: pair[0]):
        average.add(start, array)
    return average.pop(n_frames)


class OverlapAverage:
    """:func:`overlap_average` fed one window at a time, in order of start, for a clip of n_frames.

    :meth:`pop` hands out the frames that no later window can reach, so a long recording's outputs are
    averaged in memory of a few windows. The sums are the same (float64, in window order), so the
    values equal those of overlap_average.
    """

    def __init__(self, n_frames: int) -> None:
        self.n_frames = n_frames
        self.first = 0  # clip frame of the first row held
        self._total: np.ndarray | None = None  # float64 sums of the frames held
        self._count = np.zeros(0, np.int64)
        self._dtype: np.dtype = np.dtype(np.float32)

    def add(self, start: int, output: np.ndarray) -> None:
        output = np.asarray(output)
        if start < 0:
            raise ValueError(f"window starts must not be negative, got {start}")
        if start < self.first:
            raise ValueError(f"a window at {start} comes after frames up to {self.first} were handed out")
        if self._total is None:
            self._total = np.zeros((0, *output.shape[1:]), np.float64)
        elif output.shape[1:] != self._total.shape[1:]:
            raise ValueError(f"window outputs differ in shape: {sorted({output.shape[1:], self._total.shape[1:]})}")
        self._dtype = np.result_type(self._dtype, output)
        end = start + len(output) - self.first
        if end > len(self._total):
            grow = end - len(self._total)
            self._total = np.concatenate([self._total, np.zeros((grow, *self._total.shape[1:]), np.float64)])
            self._count = np.concatenate([self._count, np.zeros(grow, np.int64)])
        self._total[start - self.first : end] += output
        self._count[start - self.first : end] += 1

    def pop(self, until: int) -> np.ndarray:
        """The averaged frames from the first not yet handed out to until (at most n_frames); each must have
        an output."""
        assert self._total is not None, "no window added"
        taken = max(0, min(until, self.n_frames) - self.first)
        total = np.zeros((taken, *self._total.shape[1:])) if taken > len(self._total) else self._total[:taken]
        count = np.pad(self._count[:taken], (0, taken - min(taken, len(self._count))))
        if not count.all():
            raise ValueError(
                f"the windows leave frame {self.first + int(np.argmin(count))} of {self.n_frames} without an output"
            )
        average = (total / count.reshape(-1, *(1,) * (total.ndim - 1))).astype(self._dtype)
        self._total, self._count = self._total[taken:], self._count[taken:]
        self.first += taken
        return average


# --------------------------------------------------------------------------------------------------
# smoothing and test-time augmentation


def median_filter_time(array: np.ndarray, size: int) -> np.ndarray:
    """Median of size frames along time (axis 0), each other element on its own; size 1 is the identity.

    It removes isolated one- or two-frame blips (a spike shorter than size / 2) while keeping onsets
    and offsets of longer events in place. size must be odd so the filter is centred and shifts nothing.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"median filter size must be a positive odd number, got {size}")
    array = np.asarray(array)
    if size == 1:
        return array
    return ndimage.median_filter(array, size=(size,) + (1,) * (array.ndim - 1))


# --------------------------------------------------------------------------------------------------
# settings and decoding


@dataclass(frozen=True)
class PostProcessing:
    """How a model's outputs become events; stored (as JSON) with checkpoints and in exported models.

    thresholds: the activity threshold, one for all classes or a tuple of one per class.
    median_size: frames of the median filter along time (odd; 1 = off).
    unify_deg: multi-ACCDOA tracks of one class closer than this are one event (other formats ignore it).
    """

    thresholds: float | tuple[float, ...] = ACTIVITY_THRESHOLD
    median_size: int = 1
    unify_deg: float = UNIFY_DEG

    def __post_init__(self) -> None:
        values = np.asarray(self.thresholds, dtype=np.float64)
        if values.ndim > 1 or values.size == 0 or not np.isfinite(values).all():
            raise ValueError(f"thresholds must be a number or a non-empty list of numbers, got {self.thresholds!r}")
        # normalised so that settings read back from JSON (lists) compare and hash equal
        object.__setattr__(self, "thresholds", float(values) if values.ndim == 0 else tuple(map(float, values)))
        if isinstance(self.median_size, bool) or not isinstance(self.median_size, int | np.integer):
            raise ValueError(f"median_size must be an integer, got {self.median_size!r}")
        if self.median_size < 1 or self.median_size % 2 == 0:
            raise ValueError(f"median_size must be a positive odd number, got {self.median_size}")
        if not 0.0 <= self.unify_deg <= 180.0:
            raise ValueError(f"unify_deg must be in [0, 180] degrees, got {self.unify_deg}")
        object.__setattr__(self, "median_size", int(self.median_size))
        object.__setattr__(self, "unify_deg", float(self.unify_deg))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (thresholds as a list) for checkpoints and training configs."""
        data = asdict(self)
        if isinstance(self.thresholds, tuple):
            data["thresholds"] = list(self.thresholds)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PostProcessing":
        """Settings from :meth:`to_dict`; missing keys take their defaults.

        Bad values come from a user's config or a damaged file, so they are user errors.
        """
        if not isinstance(data, Mapping):
            raise SeldEdgeError(f"post-processing settings must be a mapping, got {data!r}")
        known = [f.name for f in fields(cls)]
        for key in sorted(set(data) - set(known)):
            raise unknown_name("post-processing key", key, known)
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise SeldEdgeError(f"invalid post-processing settings: {err}") from None

    def to_json(self) -> str:
        """JSON with a type tag, for the metadata of exported models."""
        return json.dumps({"type": "PostProcessing", **self.to_dict()}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PostProcessing":
        """Settings from :meth:`to_json`; malformed text (a damaged model file) is a user error."""
        try:
            data: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as err:
            raise SeldEdgeError(f"post-processing settings are not valid JSON ({err})") from None
        if not isinstance(data, dict) or data.pop("type", None) != "PostProcessing":
            raise SeldEdgeError("post-processing JSON has no 'type': 'PostProcessing' tag")
        return cls.from_dict(data)

    def _smoothed(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output median-filtered along time (the step before thresholds)."""
        return {name: median_filter_time(array, self.median_size) for name, array in outputs.items()}

    def to_events(
        self, outputs: Mapping[str, np.ndarray], output_format: OutputFormat, num_classes: int
    ) -> list[Event]:
        """Events of one clip from its (window-averaged, possibly TTA-averaged) outputs on the 100 ms grid.

        Median filter, then the format's decoder, which takes its thresholds and options from this object.
        """
        return [e for events in self.event_blocks([outputs], output_format, num_classes) for e in events]

    def event_blocks(
        self, blocks: Iterable[Mapping[str, np.ndarray]], output_format: OutputFormat, num_classes: int
    ) -> Iterator[list[Event]]:
        """:meth:`to_events` of a clip whose outputs come in consecutive blocks of frames (a long recording
        read piece by piece): the same events, in order, a list per block.

        The median filter needs median_size // 2 frames on each side, so each block's last frames wait for
        the next block, and the frames before a block are kept as its left context; at the clip's ends the
        filter reflects as it does over a whole clip. Decoding is frame by frame in every format.
        """
        half = self.median_size // 2
        held: dict[str, np.ndarray] = {}  # frames not yet decoded, after up to `half` frames of left context
        offset = decoded = end = 0  # clip frame of held's first row; frames decoded; frames received
        for block in blocks:
            held = {name: np.concatenate([held[name], array]) if held else np.asarray(array)
                    for name, array in block.items()}  # fmt: skip
            end = offset + len(next(iter(held.values())))
            if end - half > decoded:
                yield self._decoded(held, offset, decoded, end - half, output_format, num_classes)
                decoded = end - half
                drop = max(0, decoded - half - offset)
                held, offset = {name: array[drop:] for name, array in held.items()}, offset + drop
        if end > decoded:
            yield self._decoded(held, offset, decoded, end, output_format, num_classes)

    def _decoded(
        self,
        held: Mapping[str, np.ndarray],
        offset: int,
        first: int,
        stop: int,
        output_format: OutputFormat,
        num_classes: int,
    ) -> list[Event]:
        """Events of clip frames first .. stop - 1 from held (clip frames from offset): smoothed, decoded."""
        rows = {name: array[first - offset : stop - offset] for name, array in self._smoothed(held).items()}
        return [e.at_frame(e.frame + first) for e in output_format.decode(rows, num_classes, self)]


# --------------------------------------------------------------------------------------------------
# threshold tuning


def tune_thresholds(
    clips: Sequence[tuple[Mapping[str, np.ndarray], list[Event]]],
    output_format: OutputFormat,
    num_classes: int,
    metric: str = "dcase2023",
    grid: Sequence[float] | np.ndarray = THRESHOLD_GRID,
    base: PostProcessing = PostProcessing(),
    *,
    passes: int = 2,
) -> PostProcessing:
    """Per-class thresholds that optimise metric on validation clips (Stereo-RCnet's dynamic thresholds).

    clips: (outputs, reference events) per clip, the outputs as given to :meth:`PostProcessing.to_events`.
    Coordinate ascent: starting from base's thresholds, each class in turn gets the grid value that
    gives the best score over all clips with the other classes fixed, and keeps its threshold unless
    a value is strictly better; among equally good values the one nearest the current threshold wins,
    so a threshold moves only as far as the data asks. This repeats for up to passes rounds, stopping
    early when a round changes nothing. The result never scores worse than base on these clips.
    Grid values are rounded to 6 decimals so the stored thresholds read cleanly.

    Cost: a class's events depend on its own threshold only, so each clip is decoded once per distinct
    threshold value (at most len(grid) + C decodes per clip) and events are then regrouped per class.
    The metric is computed over all clips 1 + passes * C * len(grid) times at most (443 for
    13 classes, the default 17-value grid and 2 passes), which dominates the run time: about 40 s
    for ten 1-minute multi-ACCDOA clips with the dcase2023 metric on one CPU core.
    """
    if not clips:
        raise SeldEdgeError("threshold tuning needs at least one validation clip")
    if passes < 1:
        raise ValueError(f"passes must be positive, got {passes}")
    candidates = sorted({round(float(value), 6) for value in grid})
    if not candidates:
        raise ValueError("the threshold grid is empty")
    smoothed = [base._smoothed(outputs) for outputs, _ in clips]
    references = [reference for _, reference in clips]
    by_threshold: dict[float, list[list[list[Event]]]] = {}  # threshold -> clip -> class -> events

    def events_at(threshold: float) -> list[list[list[Event]]]:
        if threshold not in by_threshold:
            per_clip = []
            for outputs in smoothed:
                per_class: list[list[Event]] = [[] for _ in range(num_classes)]
                for event in output_format.decode(outputs, num_classes, replace(base, thresholds=threshold)):
                    per_class[event.class_index].append(event)
                per_clip.append(per_class)
            by_threshold[threshold] = per_clip
        return by_threshold[threshold]

    def loss(thresholds: Sequence[float]) -> float:
        pairs = []
        for clip, reference in enumerate(references):
            events = [e for c, value in enumerate(thresholds) for e in events_at(value)[clip][c]]
            pairs.append((reference, sorted(events, key=lambda e: (e.frame, e.class_index, e.source))))
        return selection_score(evaluate(pairs, metric, num_classes))

    thresholds = [float(value) for value in class_thresholds(base.thresholds, num_classes)]
    best = loss(thresholds)
    for _ in range(passes):
        changed = False
        for class_index in range(num_classes):
            current = thresholds[class_index]
            trials = [(best, current)] + [
                (loss([*thresholds[:class_index], value, *thresholds[class_index + 1 :]]), value)
                for value in candidates
                if value != current
            ]
            best, value = min(trials, key=lambda trial: (trial[0], abs(trial[1] - current)))
            if value != current:
                thresholds[class_index], changed = value, True
        if not changed:
            break
    return replace(base, thresholds=tuple(thresholds))

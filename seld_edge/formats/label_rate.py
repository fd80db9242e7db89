"""Label rates other than the DCASE grid: targets at a model's own rate, outputs back on the 100 ms grid.

DCASE metadata and predictions live on a 10 Hz grid. A model may decide at another rate that is a
whole multiple or divisor of it: GLFER-Net at 5 Hz (T0 = Te / 16), a model at 20 Hz. With k the ratio:

- Slower (rate = 10 / k): model frame j covers grid frames j*k .. j*k + k - 1. Its targets are the
  events of those frames, one per (class, source): the first frame's where a source is active in
  several, so a source active anywhere in the span is active in the target. Its output is repeated on
  each of those grid frames.
- Faster (rate = 10 * k): grid frame i covers model frames i*k .. i*k + k - 1. Each takes grid frame
  i's events as targets; the grid frame's output is their mean (the last, partial group averages the
  frames it has), so a streamed clip gives the same frames as an offline run.

Numbers of frames follow without knowing the clip's duration: n model frames give n * k grid frames
(slower) or ceil(n / k) (faster). A slower model's last decision can therefore reach up to
(k - 1) x 100 ms past the end of the audio, a step the model itself cannot resolve.
"""

import math
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from seld_edge.errors import SeldEdgeError
from seld_edge.formats.dcase_csv import Event

DCASE_LABEL_RATE_HZ = 10.0


def rate_ratio(label_rate_hz: float) -> tuple[int, int]:
    """(grid frames per model frame, model frames per grid frame): one of them is 1."""
    if label_rate_hz <= 0 or not math.isfinite(label_rate_hz):
        raise SeldEdgeError(f"label rate must be a positive number of Hz, got {label_rate_hz}")
    for ratio, slower in ((DCASE_LABEL_RATE_HZ / label_rate_hz, True), (label_rate_hz / DCASE_LABEL_RATE_HZ, False)):
        if ratio >= 1 and abs(ratio - round(ratio)) < 1e-9:
            return (round(ratio), 1) if slower else (1, round(ratio))
    raise SeldEdgeError(
        f"label rate {label_rate_hz} Hz is neither a whole divisor nor a whole multiple of the "
        f"{DCASE_LABEL_RATE_HZ:g} Hz DCASE grid"
    )


def grid_frames(n_model_frames: int, label_rate_hz: float) -> int:
    """Grid frames that n model frames make."""
    up, down = rate_ratio(label_rate_hz)
    return n_model_frames * up if down == 1 else -(-n_model_frames // down)


def events_at_rate(events: Iterable[Event], label_rate_hz: float) -> list[Event]:
    """Grid events (frames of 100 ms) as events on the model's frames; see the module docstring."""
    up, down = rate_ratio(label_rate_hz)
    if up == down == 1:
        return list(events)
    if down > 1:
        return [e.at_frame(e.frame * down + i) for e in events for i in range(down)]
    first: dict[tuple[int, int, int], Event] = {}
    for e in sorted(events, key=lambda e: e.frame):
        key = (e.frame // up, e.class_index, e.source)
        if key not in first:
            first[key] = e.at_frame(e.frame // up)
    return list(first.values())


def outputs_on_grid(outputs: Mapping[str, np.ndarray], label_rate_hz: float) -> dict[str, np.ndarray]:
    """Outputs (T, ...) at the model's rate as outputs on the 100 ms grid; see the module docstring."""
    up, down = rate_ratio(label_rate_hz)
    if up == down == 1:
        return dict(outputs)
    if up > 1:
        return {name: np.repeat(np.asarray(array), up, axis=0) for name, array in outputs.items()}
    grid = {}
    for name, array in outputs.items():
        array = np.asarray(array)
        starts = np.arange(0, len(array), down)
        counts = np.minimum(down, len(array) - starts).reshape(-1, *(1,) * (array.ndim - 1))
        grid[name] = (np.add.reduceat(array, starts, axis=0) / counts).astype(array.dtype)
    return grid


def grid_blocks(blocks: Iterable[Mapping[str, np.ndarray]], label_rate_hz: float) -> Iterator[dict[str, np.ndarray]]:
    """:func:`outputs_on_grid` of a clip whose outputs come in consecutive blocks of model frames: the same
    grid frames, block by block (a faster model's frames are grouped across block borders as over the
    whole clip)."""
    down = rate_ratio(label_rate_hz)[1]
    pending: dict[str, np.ndarray] = {}
    for block in blocks:
        pending = {name: np.concatenate([pending[name], array]) if pending else np.asarray(array)
                   for name, array in block.items()}  # fmt: skip
        whole = len(next(iter(pending.values()))) // down * down
        if whole:
            yield outputs_on_grid({name: array[:whole] for name, array in pending.items()}, label_rate_hz)
            pending = {name: array[whole:] for name, array in pending.items()}
    if pending and len(next(iter(pending.values()))):
        yield outputs_on_grid(pending, label_rate_hz)

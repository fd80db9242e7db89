"""Streaming SELD: audio blocks in, one label frame of events out as soon as it can be computed.

The core, :class:`StreamingSeld`, is fed numpy blocks (channels, samples) by whoever owns the
audio (:func:`stream_blocks` runs any iterable of blocks through it): ``seld-edge run --stream`` reads
a file in 100 ms blocks (runtime.pipeline), a live run reads a pipe or a sound card (runtime.live).
It holds constant memory whatever the stream length: a bounded audio buffer, the model's window of
feature frames and median_size label outputs.

How each block is processed:

1. Features, incrementally (:class:`FeatureStream`). Only the STFT frames that the new samples
   complete are computed. A centred STFT frame t covers samples t*hop - n_fft/2 .. t*hop + n_fft/2, so
   a frame needs n_fft/2 samples of look-ahead (21 ms for n_fft 1024 at 24 kHz); the start and the end
   of the stream get the same reflect padding as the offline :func:`seld_edge.features.functional.stft`,
   so the linear spectra, intensity vectors and mel bands equal the offline ones.
2. A look-back of the model's window of feature frames (its training window). When the
   frames of a label frame are complete, the model runs on the latest window (on all frames so far while
   fewer than a window have arrived) and that label frame's outputs are its last output frame. With a
   look-ahead of L label frames, label frame j instead takes row -1-L of the window that ends with frame
   j + L: L x 100 ms more delay for right context (at the end of the stream the last window's rows).
3. The model's frames on the 100 ms grid, as offline (seld_edge.formats.label_rate): a 5 Hz model's
   frame becomes two grid frames, a 20 Hz model's pair of frames one (their mean). Below, "label frame"
   is the model's frame and "grid frame" the 100 ms one; for a 10 Hz model they are the same.
4. Post-processing per grid frame: the median filter of size k needs k // 2 frames of the future, so
   grid frame j is emitted when frame j + k // 2 has outputs (k // 2 x 100 ms later; nothing is delayed
   for k = 1); at the end of the stream the last frames are filtered with the clip-end reflection, as
   offline. Then the output format's decoder with the model's thresholds.

The delay from a sound to its events is at most one block plus one label frame (100 ms) plus n_fft / 2
samples plus (L + k // 2) label frames, plus the processing time that ``stats`` measures.

Where streaming and offline (`seld-edge run` without --stream) differ, by design:

- The log spectrum's top_db floor is relative to a maximum. Offline takes the whole clip's maximum per
  channel, which a stream does not know yet; streaming takes the maximum over the look-back window
  (the frames the model is about to see). Bins more than top_db below the loudest frame of the last
  window, rather than of the clip, are floored: only very quiet passages differ.
- Offline averages the outputs of 50 %-overlapping windows and gives a frame context on both sides;
  a stream gives each label frame the output of one window, which ends with it (or L frames later).
  A model that looks ahead (a bidirectional RNN, attention over the window) is less accurate at the
  end of its window, so its streamed events differ more from the offline ones than a causal model's;
  the look-ahead buys that accuracy back for delay.
"""

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from seld_edge.errors import SeldEdgeError
from seld_edge.features import FeatureConfig
from seld_edge.features.extract import check_finite, linear_features, log_features, window_for
from seld_edge.features.functional import frame_spectra
from seld_edge.formats import Event
from seld_edge.formats.label_rate import rate_ratio
from seld_edge.inference import Network
from seld_edge.model_metadata import ModelMetadata
from seld_edge.postprocess import median_filter_time

CHUNK_FRAMES = 16
"""Room for this many hops of new audio in the buffer beyond 2 * n_fft: bounds the buffer, and the frames
computed per FFT call, whatever the block size."""


@dataclass(frozen=True)
class LabelFrame:
    """The events of one label frame (100 ms for 10 Hz labels); ``events`` is empty when nothing is active."""

    index: int
    events: tuple[Event, ...]


class LatencyStats:
    """Per-block processing times in constant memory, for a stream of any length.

    Count, mean and maximum are exact; the percentiles come from a histogram with logarithmic bins
    0.6 % wide between 1 microsecond and 100 s, so they are within 0.3 % of the exact values.
    """

    _EDGES_MS = np.geomspace(1e-3, 1e5, 3201)

    def __init__(self) -> None:
        self._counts = np.zeros(len(self._EDGES_MS) - 1, dtype=np.int64)
        self.count = 0
        self._total_ms = 0.0
        self._min_ms = float("inf")
        self.max_ms = 0.0

    def record(self, seconds: float) -> None:
        ms = seconds * 1e3
        index = int(np.searchsorted(self._EDGES_MS, ms, side="right")) - 1
        self._counts[min(max(index, 0), len(self._counts) - 1)] += 1
        self.count += 1
        self._total_ms += ms
        self._min_ms = min(self._min_ms, ms)
        self.max_ms = max(self.max_ms, ms)

    @property
    def mean_ms(self) -> float:
        return self._total_ms / self.count if self.count else float("nan")

    def percentile_ms(self, q: float) -> float:
        """The q-th percentile (0..100): the geometric centre of its histogram bin, within [min, max]."""
        if not self.count:
            return float("nan")
        rank = max(1, int(np.ceil(q / 100.0 * self.count)))
        index = int(np.searchsorted(np.cumsum(self._counts), rank))
        centre = float(np.sqrt(self._EDGES_MS[index] * self._EDGES_MS[index + 1]))
        return min(max(centre, self._min_ms), self.max_ms)

    def summary(self) -> dict[str, float]:
        return {
            "count": self.count,
            "mean_ms": self.mean_ms,
            "p50_ms": self.percentile_ms(50),
            "p95_ms": self.percentile_ms(95),
            "max_ms": self.max_ms,
        }

    def format(self) -> str:
        """One line: count, mean, p50, p95 and max in milliseconds."""
        s = self.summary()
        return (
            f"count {s['count']}, mean {s['mean_ms']:.2f} ms, p50 {s['p50_ms']:.2f} ms, "
            f"p95 {s['p95_ms']:.2f} ms, max {s['max_ms']:.2f} ms"
        )


class FeatureStream:
    """Incremental features: push audio blocks, get the feature frames they complete.

    Frames come out in the linear domain (power or mel power per input channel, then the intensity
    vector): the dB conversion's top_db floor depends on a maximum over frames, which the caller
    chooses (:class:`StreamingSeld` uses its look-back window). The audio buffer holds at most
    2 * n_fft + CHUNK_FRAMES * hop samples; larger blocks are processed in pieces.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self._pad = config.n_fft // 2
        self._buffer = np.zeros((config.in_channels, 2 * config.n_fft + CHUNK_FRAMES * config.hop_length), np.float32)
        self._start = 0  # index of buffer[:, 0] in the padded signal (audio sample k is at k + n_fft // 2)
        self._length = self._pad  # buffer[:, :n_fft // 2] gets the start's reflection once it is known
        self.samples = 0
        self.frames = 0
        self._started = False  # the start's reflection is in place
        self._finished = False

    def push(self, block: np.ndarray) -> np.ndarray:
        """Features (C_out, t, F) float32 of the t >= 0 frames that block (in_channels, n) completes."""
        if self._finished:
            raise ValueError("push after finish")
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.config.in_channels:
            raise SeldEdgeError(f"audio block of shape {block.shape}, expected ({self.config.in_channels}, samples)")
        if not np.isfinite(block).all():
            raise SeldEdgeError("audio contains NaN or infinite samples")
        out = []
        offset = 0
        while offset < block.shape[1]:
            take = min(block.shape[1] - offset, self._buffer.shape[1] - self._length)
            self._buffer[:, self._length : self._length + take] = block[:, offset : offset + take]
            self._length += take
            self.samples += take
            offset += take
            if not self._started and self.samples > self._pad:  # the reflection's n_fft // 2 + 1 samples are in
                self._buffer[:, : self._pad] = self._buffer[:, 2 * self._pad : self._pad : -1]
                self._started = True
            if self._started:
                out.append(self._frames_until(None))
        return self._joined(out)

    def finish(self) -> np.ndarray:
        """The remaining frames, with the end's reflect padding; as many frames in all as offline."""
        if self._finished:
            raise ValueError("finish called twice")
        if self.samples <= self._pad:
            raise SeldEdgeError(
                f"{self.samples} samples is too short for {self.config.kind} (n_fft {self.config.n_fft})"
            )
        self._finished = True
        end = self._length
        self._buffer[:, end : end + self._pad] = self._buffer[:, end - self._pad - 1 : end - 1][:, ::-1]
        self._length += self._pad
        return self._frames_until(self.config.n_frames(self.samples))

    def _frames_until(self, total: int | None) -> np.ndarray:
        """Every frame the buffer completes (up to total frames in all), then drop the samples no later
        frame needs, keeping the last n_fft // 2 + 1 samples for the end's reflection."""
        hop, n_fft = self.config.hop_length, self.config.n_fft
        end = self._start + self._length
        count = max(0, (end - n_fft) // hop + 1 - self.frames)
        if total is not None:
            count = min(count, total - self.frames)
        if count:
            first = self.frames * hop - self._start
            segment = self._buffer[:, first : first + (count - 1) * hop + n_fft]
            frames = sliding_window_view(segment, n_fft, axis=-1)[:, ::hop]
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused by check_finite, in one line
                features = linear_features(frame_spectra(frames, window_for(self.config)), self.config)
            check_finite(features, segment)
        else:
            features = self._joined([])
        self.frames += count
        keep = min(self.frames * hop, end - self._pad - 1) - self._start
        self._buffer[:, : self._length - keep] = self._buffer[:, keep : self._length]
        self._start += keep
        self._length -= keep
        return features

    def _joined(self, parts: list[np.ndarray]) -> np.ndarray:
        if not parts:
            return np.zeros((self.config.out_channels, 0, self.config.n_bins), np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


class StreamingSeld:
    """Streaming inference for one model: :meth:`push` audio blocks, :meth:`finish` at the end.

    Each call returns the label frames it completed, in order, every frame exactly once (with its
    events, possibly none); a stream of N samples gives as many label frames as an offline run.
    ``lookahead`` label frames: label frame j takes its outputs from the window that ends ``lookahead``
    frames after it instead of the one that ends with it, which delays it by as many frames and gives
    a model that looks ahead (a bidirectional RNN) the right context it was trained with.
    ``stats`` records the processing time of every :meth:`push` (pass one object to several streams to
    pool them).
    """

    def __init__(
        self, metadata: ModelMetadata, network: Network, lookahead: int = 0, stats: LatencyStats | None = None
    ) -> None:
        if not 0 <= lookahead < metadata.window_labels:
            raise SeldEdgeError(
                f"look-ahead of {lookahead} label frames must be 0 or more and less than the model's window "
                f"({metadata.window_labels} label frames)"
            )
        config = metadata.feature_config  # one input: a live source is one recording
        (self._input,) = metadata.inputs
        self.metadata = metadata
        self.stats = LatencyStats() if stats is None else stats
        self._network = network
        self._lookahead = lookahead
        self._features = FeatureStream(config)
        self._per_label = metadata.frames_per_label(self._input)
        self._window = metadata.window_frames(self._input)
        self._format = metadata.format
        self._up, self._down = rate_ratio(metadata.label_rate_hz)
        self._pending: list[dict[str, np.ndarray]] = []  # model frames waiting to make one grid frame
        # Each frame is written twice, at f % W and f % W + W, so the latest W frames are one slice.
        self._ring = np.zeros((config.out_channels, 2 * self._window, config.n_bins), np.float32)
        self._frames = 0
        self._latest: dict[str, np.ndarray] = {}  # outputs (labels, ...) of the latest window
        self._completed = 0  # label frames whose window has run
        self._median_size = metadata.postprocess.median_size
        self._recent: deque[dict[str, np.ndarray]] = deque(maxlen=self._median_size)
        self._labels = 0  # label frames whose outputs are in (through self._recent)
        self._emitted = 0
        self._decoder = replace(metadata.postprocess, median_size=1)

    def push(self, block: np.ndarray) -> list[LabelFrame]:
        """Feed (in_channels, n) float32 audio at the model's sample rate; any n, a live source's block."""
        started = time.perf_counter()
        emitted = self._consume(self._features.push(block))
        self.stats.record(time.perf_counter() - started)
        return emitted

    def finish(self) -> list[LabelFrame]:
        """End of stream: the last frames (a partial label frame zero-padded, as offline), the frames the
        look-ahead held back (from the last window) and the median's tail."""
        emitted = self._consume(self._features.finish())
        partial = self._frames % self._per_label
        if partial:
            zeros = self._per_label - partial
            emitted += self._run(min(self._frames, self._window - zeros), zeros)
        for row in range(-min(self._lookahead, self._completed), 0):
            emitted += self._add_outputs(row)
        if self._pending:
            emitted += self._add_grid_frames()
        while self._emitted < self._labels:
            emitted.append(self._emit())
        return emitted

    def _consume(self, features: np.ndarray) -> list[LabelFrame]:
        emitted = []
        for i in range(features.shape[1]):
            position = self._frames % self._window
            self._ring[:, position] = self._ring[:, position + self._window] = features[:, i]
            self._frames += 1
            if self._frames % self._per_label == 0:
                emitted += self._run(min(self._frames, self._window), 0)
        return emitted

    def _run(self, frames: int, zeros: int) -> list[LabelFrame]:
        """Run the model on the latest frames (+ zeros of padding); pass on the row the look-ahead allows."""
        config = self.metadata.feature_config
        start = (self._frames - frames) % self._window
        window = self._ring[:, start : start + frames].copy()
        log_features(window, config)
        if zeros:
            window = np.concatenate([window, np.zeros((window.shape[0], zeros, window.shape[2]), np.float32)], axis=1)
        outputs = self._network({self._input.name: window[None]})
        self._latest = {name: np.asarray(outputs[name])[0] for name in self.metadata.output_names}
        self._completed += 1
        return self._add_outputs(-1 - self._lookahead) if self._completed > self._lookahead else []

    def _add_outputs(self, row: int) -> list[LabelFrame]:
        """Take the next model frame's outputs from the latest window's row; grid frames follow once a
        faster model's group of frames is complete (seld_edge.formats.label_rate)."""
        self._pending.append({name: array[row] for name, array in self._latest.items()})
        return self._add_grid_frames() if len(self._pending) == self._down else []

    def _add_grid_frames(self) -> list[LabelFrame]:
        """The pending model frames as grid frames (their mean; repeated for a slower model); emit what the
        median allows."""
        frame = {name: np.mean([p[name] for p in self._pending], axis=0) for name in self._pending[0]}
        self._pending = []
        emitted = []
        for _ in range(self._up):
            self._recent.append(frame)
            self._labels += 1
            if self._labels - self._emitted > self._median_size // 2:
                emitted.append(self._emit())
        return emitted

    def _emit(self) -> LabelFrame:
        """The next label frame: median over the outputs held (clip-start/end reflection as offline), decoded."""
        index = self._emitted
        first = self._labels - len(self._recent)  # label index of self._recent[0]
        row = {
            name: median_filter_time(np.stack([r[name] for r in self._recent]), self._median_size)[
                index - first : index - first + 1
            ]
            for name in self.metadata.output_names
        }
        events = self._decoder.to_events(row, self._format, self.metadata.num_classes)
        self._emitted += 1
        return LabelFrame(index, tuple(e.at_frame(index) for e in events))


def stream_blocks(
    metadata: ModelMetadata,
    network: Network,
    blocks: Iterable[np.ndarray],
    lookahead: int = 0,
    stats: LatencyStats | None = None,
) -> Iterator[LabelFrame]:
    """Every label frame of a stream of (in_channels, n) float32 blocks, each yielded as soon as it is
    decided; the end of ``blocks`` is the end of the stream (:meth:`StreamingSeld.finish`)."""
    stream = StreamingSeld(metadata, network, lookahead, stats)
    for block in blocks:
        yield from stream.push(block)
    yield from stream.finish()

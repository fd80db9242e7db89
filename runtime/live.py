"""Live input for ``seld-edge run MODEL - --stream`` and ``--device NAME``: audio blocks from a pipe or a
sound card, label frames out as soon as they are decided.

Two sources, each yielding (channels, samples) float32 blocks at the model's sample rate:

- :func:`pipe_blocks`: standard input, as ``arecord -D hw:1 -c 4 -r 24000 -f S16_LE`` writes it. Raw
  16-bit little-endian PCM, interleaved; or a WAV stream when the input starts with a RIFF header
  (``arecord`` without ``-t raw`` writes one, with an unknown data length, which is read to the end).
- :func:`device_blocks`: a sound card through the optional ``sounddevice`` package (PortAudio;
  ``pip install seld-edge[live]``), imported only here. Capture runs until Ctrl-C, which ends the
  stream like the end of a file: the frames still held back are decided and written.

16-bit samples become floats as soundfile reads a 16-bit WAV file (sample / 32768), so a pipe and
``seld-edge run --stream`` on the same audio written as a 16-bit WAV give the same events.

:class:`LiveOutput` writes each label frame the moment it is decided: its CSV rows appended and flushed
to ``OUT_DIR/live.csv`` (a program can tail it), and with ``json_lines`` one JSON object per frame on
stdout. Unlike the offline outputs, live.csv is written as it grows, not atomically: a stopped capture
keeps every frame decided before it stopped.
"""

import json
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import IO, Any, BinaryIO

import numpy as np

from runtime.stream import LabelFrame
from seld_edge.errors import SeldEdgeError
from seld_edge.features import FeatureConfig
from seld_edge.formats import format_events
from seld_edge.formats.label_rate import DCASE_LABEL_RATE_HZ
from seld_edge.model_metadata import ModelMetadata

LIVE_CSV = "live.csv"
"""The file in OUT_DIR that a live run appends its rows to."""

PCM16_SCALE = 32768.0
WAVE_FORMAT_PCM = 1
WAVE_FORMAT_EXTENSIBLE = 0xFFFE


def check_source(config: FeatureConfig, channels: int | None, rate: int | None, source: str) -> None:
    """One line (SeldEdgeError) unless the source's channel count and sample rate are the model's."""
    if channels is not None and channels != config.in_channels:
        raise SeldEdgeError(f"{source}: {channels} channels, the model takes {config.in_channels}")
    if rate is not None and rate != config.sample_rate:
        raise SeldEdgeError(f"{source}: {rate} Hz, the model takes {config.sample_rate} Hz")


def pipe_blocks(
    stream: BinaryIO, config: FeatureConfig, block_frames: int, channels: int | None = None, rate: int | None = None
) -> Iterator[np.ndarray]:
    """Blocks of block_frames samples from a byte stream of 16-bit PCM (raw, or a WAV stream).

    ``channels`` and ``rate`` are what the user says the raw stream holds (None: the model's); a WAV
    header says it itself, and both are checked against the model before any audio is read.
    """
    head = _read_exactly(stream, 12)
    if head[:4] == b"RIFF":
        if head[8:12] != b"WAVE":
            raise SeldEdgeError("standard input: a RIFF stream that is not WAVE audio")
        wav_channels, wav_rate = _wav_format(stream)
        for given, found, what in ((channels, wav_channels, "--channels"), (rate, wav_rate, "--rate")):
            if given is not None and given != found:
                raise SeldEdgeError(f"standard input: the WAV header says {found}, {what} says {given}")
        channels, rate, pending = wav_channels, wav_rate, b""
    else:
        pending = head
    check_source(config, channels, rate, "standard input")
    frame_bytes = 2 * config.in_channels
    while True:
        data = pending + _read_exactly(stream, block_frames * frame_bytes - len(pending))
        pending = b""
        usable = len(data) - len(data) % frame_bytes
        if usable:
            pcm = np.frombuffer(data[:usable], dtype="<i2").reshape(-1, config.in_channels)
            yield (pcm.T / PCM16_SCALE).astype(np.float32)
        if len(data) < block_frames * frame_bytes:  # end of input
            if usable != len(data):
                print(f"warning: standard input ended inside a sample frame; {len(data) - usable} bytes left out",
                      file=sys.stderr)  # fmt: skip
            return


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    """size bytes, fewer only at the end of the stream (a pipe delivers what the writer has written)."""
    parts, remaining = [], size
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _wav_format(stream: BinaryIO) -> tuple[int, int]:
    """(channels, rate) from the chunks after "RIFF....WAVE", leaving the stream at the audio data.

    Only 16-bit integer PCM (format 1, or WAVE_FORMAT_EXTENSIBLE holding it) is taken: it is what a
    sound card's capture tools write by default, and what the runtime converts like soundfile."""
    channels = rate = None
    while True:
        header = _read_exactly(stream, 8)
        if len(header) < 8:
            raise SeldEdgeError("standard input: WAV stream without a data chunk")
        name, size = header[:4], struct.unpack("<I", header[4:])[0]
        if name == b"data":
            if channels is None or rate is None:
                raise SeldEdgeError("standard input: WAV stream without a fmt chunk before its data")
            return channels, rate
        body = _read_exactly(stream, size + size % 2)  # chunks are padded to an even size
        if name == b"fmt ":
            tag, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if tag == WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID starts with the format tag
            if tag != WAVE_FORMAT_PCM or bits != 16:
                raise SeldEdgeError(f"standard input: WAV format {tag} with {bits}-bit samples; 16-bit PCM is taken")


def load_sounddevice() -> ModuleType:
    """The optional sounddevice module, or one line saying how to install it."""
    try:
        import sounddevice
    except (ImportError, OSError) as err:  # OSError: the module is there but PortAudio is not
        raise SeldEdgeError(
            f"--device needs the sounddevice package and PortAudio: pip install seld-edge[live] ({err})"
        ) from None
    return sounddevice


def list_devices() -> list[str]:
    """One line per capture device: index, name, input channels, default sample rate."""
    devices = [d for d in load_sounddevice().query_devices() if d["max_input_channels"] > 0]
    return [
        f"{d['index']:>3}  {d['name']:<40} {d['max_input_channels']:>3} channels  {d['default_samplerate']:.0f} Hz"
        for d in devices
    ]


def device_blocks(device: str, config: FeatureConfig, block_frames: int) -> Iterator[np.ndarray]:
    """Blocks captured from a sound card at the model's channel count and rate, until Ctrl-C.

    A device that cannot capture in that format is one line (PortAudio's reason). Samples the card
    delivered while the model was busy and that PortAudio had to drop are reported on stderr."""
    sd = load_sounddevice()
    name: Any = int(device) if device.isdigit() else device
    try:
        stream = sd.InputStream(
            device=name, channels=config.in_channels, samplerate=config.sample_rate, dtype="float32",
            blocksize=block_frames,
        )  # fmt: skip
    except (sd.PortAudioError, ValueError) as err:
        raise SeldEdgeError(f"--device {device}: cannot capture {config.in_channels} channels at "
                            f"{config.sample_rate} Hz ({err})") from None  # fmt: skip
    with stream:
        while True:
            try:
                block, overflowed = stream.read(block_frames)
            except KeyboardInterrupt:
                return
            if overflowed:
                print("warning: input overflow: the capture dropped samples (processing too slow)", file=sys.stderr)
            yield np.ascontiguousarray(np.asarray(block, dtype=np.float32).T)


class LiveOutput:
    """Writes each label frame as it is decided: CSV rows appended and flushed to a file, and optionally
    one JSON object per frame through ``json_line`` (the CLI prints it to stdout)."""

    def __init__(self, path: Path, meta: ModelMetadata, json_line: Callable[[str], None] | None = None) -> None:
        self.meta = meta
        self.form = meta.format.csv_form
        self.json_line = json_line
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(path, "w")  # closed by close()
        self._header = format_events([], self.form)  # the form's header line, empty for headerless forms
        self._file.write(self._header)
        self._file.flush()

    def write(self, frame: LabelFrame) -> None:
        self._file.write(format_events(frame.events, self.form)[len(self._header) :])
        self._file.flush()
        if self.json_line is not None:
            self.json_line(json.dumps(frame_json(frame, self.meta)))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "LiveOutput":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def frame_json(frame: LabelFrame, meta: ModelMetadata) -> dict[str, Any]:
    """A label frame for other programs: its index and time, and its events with class names (every frame,
    empty ones too, so a reader has a clock)."""
    return {
        "frame": frame.index,
        "time": round(frame.index / DCASE_LABEL_RATE_HZ, 3),
        "events": [
            {
                "class": e.class_index,
                "name": meta.class_names[e.class_index],
                "source": e.source,
                "azimuth": round(e.azimuth, 2),
                "elevation": round(e.elevation, 2),
                "distance": None if e.distance is None else round(e.distance, 3),
            }
            for e in frame.events
        ],
    }

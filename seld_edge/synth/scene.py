"""Scenes: when and where sound events happen, their 100 ms labels, and the mixed FOA audio.

Events are laid out in up to three polyphony layers; inside a layer they follow each other with a
gap of at least 0.2 s, so no two events of one layer share a label frame and the polyphony of the
labels, not only of the audio, never exceeds the number of layers. Sources are static or move in
azimuth at a constant angular speed; labels give the direction at each frame centre.
"""

from dataclasses import dataclass, replace

import numpy as np

from seld_edge.audio import foa_to_stereo
from seld_edge.errors import SeldEdgeError
from seld_edge.formats.classes import NUM_CLASSES
from seld_edge.formats.dcase_csv import Event
from seld_edge.geometry import polar_to_unit
from seld_edge.synth.mic_array import FILTER_HALF_LENGTH, diffuse_mic, encode_mic
from seld_edge.synth.sounds import synthesize
from seld_edge.synth.spatial import (
    Room,
    diffuse_noise,
    distance_to_walls,
    encode_foa_paths,
    pink_noise,
    propagation_paths,
    reflection_tail,
    sample_room,
)

SAMPLE_RATE = 24000
LABEL_HOP_S = 0.1
MIN_SECONDS = 1.0
MAX_SECONDS = 600.0  # STARSS23's longest recordings are a few minutes; a scene is rendered in memory whole
END_MARGIN_S = 0.001  # events end this much before the scene, so their last sample is inside it at any rate
FIRST_ONSET_S = 0.5  # the first event starts within this, so every scene has at least one event
DURATION_RANGE_S = (0.5, 4.0)
DISTANCE_RANGE_M = (1.0, 5.0)
ELEVATION_RANGE_DEG = (-45.0, 45.0)
ANGULAR_SPEED_RANGE_DEG_S = (10.0, 60.0)
MOVING_PROBABILITY = 0.5
SAME_CLASS_PROBABILITY = 0.1  # an event overlapping others takes the class of one of them
# Per polyphony layer, the range of the gap (s) between consecutive events: layer 0 is busy, 2 sparse.
LAYER_GAPS_S = ((0.2, 1.5), (1.0, 6.0), (3.0, 12.0))
SNR_DB_RANGE = (17.0, 23.0)
SCENE_GAIN = 0.1  # a source at 1 m has its loudest 50 ms at -20 dBFS RMS; fixed so that level carries distance
PEAK_LIMIT = 0.99  # louder scenes are scaled down so neither FOA nor stereo (W +- Y) nor MIC clips
AUDIO_FORMATS = ("foa", "mic")  # what a scene renders; stereo is derived from FOA


@dataclass(frozen=True)
class SceneEvent:
    """One sound event: class, source index, timing (s) and a straight azimuth trajectory (degrees)."""

    class_index: int
    source: int
    onset: float
    duration: float
    azimuth: float  # at the onset
    azimuth_rate: float  # degrees per second, counter-clockwise; 0 for a static source
    elevation: float
    distance: float  # metres

    def span(self, sample_rate: int) -> tuple[int, int]:
        """First and one-past-last sample of the event."""
        start = round(self.onset * sample_rate)
        return start, start + round(self.duration * sample_rate)

    def frames(self, sample_rate: int) -> range:
        """Label frames in which the event is active for at least one sample."""
        start, stop = self.span(sample_rate)
        hop = round(LABEL_HOP_S * sample_rate)
        return range(start // hop, (stop - 1) // hop + 1)

    def azimuth_at(self, t: np.ndarray) -> np.ndarray:
        """Azimuth in [-180, 180) at times t (s)."""
        return _wrap_degrees(self.azimuth + self.azimuth_rate * (np.asarray(t) - self.onset))

    def directions(self, t: np.ndarray) -> np.ndarray:
        """Unit vectors (len(t), 3) from the listener to the source at times t (s)."""
        azimuth = self.azimuth_at(t)
        return polar_to_unit(azimuth, np.full_like(azimuth, self.elevation))


def generate_scene(
    seconds: float,
    rng: np.random.Generator,
    sample_rate: int = SAMPLE_RATE,
    reflections: bool = True,
    max_polyphony: int = 3,
    room: Room | None = None,
) -> tuple[np.ndarray, list[Event]]:
    """A random scene: (4, N) float32 FOA audio (W, Y, Z, X; SN3D) and its 100 ms labels.

    ``room`` fixes the room geometry (a data set reuses it across the mixes of one room); by default
    one is drawn from ``rng``. Reflections are audible but never labelled, as in real recordings.
    """
    audio, labels = generate_scene_formats(seconds, rng, ("foa",), sample_rate, reflections, max_polyphony, room)
    return audio["foa"], labels


def generate_scene_formats(
    seconds: float,
    rng: np.random.Generator,
    formats: tuple[str, ...],
    sample_rate: int = SAMPLE_RATE,
    reflections: bool = True,
    max_polyphony: int = 3,
    room: Room | None = None,
) -> tuple[dict[str, np.ndarray], list[Event]]:
    """:func:`generate_scene` recorded in several formats (see :func:`render_scene_formats`) at once."""
    if not seconds >= MIN_SECONDS:  # also NaN
        raise SeldEdgeError(f"scene length {seconds} s is too short (at least {MIN_SECONDS:g} s)")
    if seconds > MAX_SECONDS:
        raise SeldEdgeError(f"scene length {seconds} s is too long (at most {MAX_SECONDS:g} s)")
    room = sample_room(rng) if room is None else room
    events = place_events(seconds, rng, room, max_polyphony, sample_rate)
    audio = render_scene_formats(events, seconds, rng, room, formats, sample_rate, reflections)
    return audio, label_events(events, sample_rate)


def place_events(
    seconds: float, rng: np.random.Generator, room: Room, max_polyphony: int = 3, sample_rate: int = SAMPLE_RATE
) -> list[SceneEvent]:
    """Random events in up to max_polyphony layers, sorted by onset, with STARSS-style source indices."""
    if not 1 <= max_polyphony <= len(LAYER_GAPS_S):
        raise SeldEdgeError(f"max_polyphony must be between 1 and {len(LAYER_GAPS_S)}, got {max_polyphony}")
    end = seconds - END_MARGIN_S
    events: list[SceneEvent] = []
    for layer, (gap_low, gap_high) in enumerate(LAYER_GAPS_S[:max_polyphony]):
        below = list(events)
        onset = rng.uniform(0.0, FIRST_ONSET_S if layer == 0 else gap_high)
        while onset + DURATION_RANGE_S[0] <= end:
            duration = min(rng.uniform(*DURATION_RANGE_S), end - onset)
            overlapping = [e for e in below if e.onset < onset + duration and onset < e.onset + e.duration]
            events.append(_random_event(onset, duration, overlapping, rng, room))
            onset += duration + rng.uniform(gap_low, gap_high)
    return _assign_sources(sorted(events, key=lambda e: e.onset), sample_rate)


def _random_event(
    onset: float, duration: float, overlapping: list[SceneEvent], rng: np.random.Generator, room: Room
) -> SceneEvent:
    if overlapping and rng.random() < SAME_CLASS_PROBABILITY:
        class_index = overlapping[rng.integers(len(overlapping))].class_index
    else:
        class_index = int(rng.integers(NUM_CLASSES))
    azimuth = rng.uniform(-180.0, 180.0)
    moving = rng.random() < MOVING_PROBABILITY
    rate = rng.choice([-1.0, 1.0]) * rng.uniform(*ANGULAR_SPEED_RANGE_DEG_S) if moving else 0.0
    elevation = rng.uniform(*ELEVATION_RANGE_DEG)
    path = polar_to_unit(azimuth + rate * duration * np.linspace(0.0, 1.0, 17), np.full(17, elevation))
    farthest = min(DISTANCE_RANGE_M[1], distance_to_walls(room, path))
    distance = rng.uniform(DISTANCE_RANGE_M[0], max(farthest, DISTANCE_RANGE_M[0]))
    return SceneEvent(class_index, 0, onset, duration, float(azimuth), float(rate), float(elevation), float(distance))


def _assign_sources(events: list[SceneEvent], sample_rate: int) -> list[SceneEvent]:
    """Give each event the lowest source index not held by a same-class event sharing a label frame
    with it: simultaneous same-class sources are told apart, and indices count 0, 1, 2 per class."""
    assigned: list[SceneEvent] = []
    for event in events:
        frames = event.frames(sample_rate)
        taken = {
            other.source
            for other in assigned
            if other.class_index == event.class_index and _overlap(other.frames(sample_rate), frames)
        }
        assigned.append(replace(event, source=min(set(range(len(taken) + 1)) - taken)))
    return assigned


def _overlap(a: range, b: range) -> bool:
    return a.start < b.stop and b.start < a.stop


def label_events(events: list[SceneEvent], sample_rate: int = SAMPLE_RATE) -> list[Event]:
    """One Event per active event and label frame: integer degrees at the frame centre, distance in cm."""
    labels = []
    for event in events:
        frames = np.array(event.frames(sample_rate))
        azimuths = event.azimuth_at((frames + 0.5) * LABEL_HOP_S)
        for frame, azimuth in zip(frames.tolist(), azimuths.tolist(), strict=True):
            labels.append(
                Event(
                    frame,
                    event.class_index,
                    event.source,
                    float(round(azimuth)),
                    float(round(event.elevation)),
                    round(event.distance, 2),
                )
            )
    return sorted(labels, key=lambda e: (e.frame, e.class_index, e.source))


def render_scene(
    events: list[SceneEvent],
    seconds: float,
    rng: np.random.Generator,
    room: Room,
    sample_rate: int = SAMPLE_RATE,
    reflections: bool = True,
) -> np.ndarray:
    """(4, N) float32 FOA of the events in the room over a diffuse background at 17-23 dB SNR.

    The SNR is measured on W over the samples where some event is active (a scene without events
    gets background at the level of a unit source at 1 m).
    """
    return render_scene_formats(events, seconds, rng, room, ("foa",), sample_rate, reflections)["foa"]


def render_scene_formats(
    events: list[SceneEvent],
    seconds: float,
    rng: np.random.Generator,
    room: Room,
    formats: tuple[str, ...],
    sample_rate: int = SAMPLE_RATE,
    reflections: bool = True,
) -> dict[str, np.ndarray]:
    """One scene recorded by the FOA microphone and/or the tetrahedral MIC array: format -> (4, N) float32.

    Both formats hear the same plane waves (direct paths and reflections, from
    :func:`~seld_edge.synth.spatial.propagation_paths`) and the same diffuse background: the MIC one is
    the FOA one's field seen by the rigid sphere (:func:`~seld_edge.synth.mic_array.diffuse_mic`), at
    the gain set by the SNR on FOA's W. Each format is then scaled by SCENE_GAIN, or less when its own
    peak would pass PEAK_LIMIT. The random draws of the FOA recording come first and in the same
    order whatever the formats, so a scene's FOA does not depend on whether its MIC is rendered too.
    """
    unknown = sorted(set(formats) - set(AUDIO_FORMATS))
    if unknown or not formats:
        raise SeldEdgeError(f"scene formats must be among {', '.join(AUDIO_FORMATS)}, got {', '.join(formats)}")
    n = round(seconds * sample_rate)
    foa = np.zeros((4, n))
    mic = np.zeros((4, n)) if "mic" in formats else None
    active = np.zeros(n, dtype=bool)
    tail = reflection_tail(room, sample_rate) if reflections else 0
    for event in events:
        start, stop = event.span(sample_rate)
        end = min(n, stop + tail)
        t = np.arange(start, end) / sample_rate
        positions = np.asarray(room.listener) + event.distance * event.directions(t)
        sound = synthesize(event.class_index, stop - start, rng, sample_rate)
        paths = propagation_paths(sound, positions, room, sample_rate, reflections)
        foa[:, start:end] += encode_foa_paths(paths)
        if mic is not None:
            for signal, directions in paths:
                _add_at(mic, encode_mic(signal, directions, sample_rate), start - FILTER_HALF_LENGTH)
        active[start:stop] = True
    signal_rms = np.sqrt(np.mean(foa[0, active] ** 2)) if active.any() else 1.0
    noise_gain = signal_rms * 10.0 ** (-rng.uniform(*SNR_DB_RANGE) / 20.0)
    background = diffuse_noise(n, rng, sample_rate)
    foa += noise_gain * background
    peak = max(np.max(np.abs(foa[0]) + np.abs(foa[1])), np.max(np.abs(foa)))  # stereo is W +- Y
    audio = {"foa": foa * min(SCENE_GAIN, PEAK_LIMIT / peak)}
    if mic is not None:
        mic += noise_gain * diffuse_mic(background, pink_noise(4, n, rng, sample_rate), sample_rate)
        audio["mic"] = mic * min(SCENE_GAIN, PEAK_LIMIT / np.max(np.abs(mic)))
    return {name: audio[name].astype(np.float32) for name in formats}


def _add_at(target: np.ndarray, block: np.ndarray, offset: int) -> None:
    """target[:, offset : offset + width] += block, for the part of block that falls inside target."""
    first, last = max(offset, 0), min(offset + block.shape[1], target.shape[1])
    if first < last:
        target[:, first:last] += block[:, first - offset : last - offset]


def _wrap_degrees(angle: np.ndarray) -> np.ndarray:
    return (angle + 180.0) % 360.0 - 180.0


def scene_audio(audio_format: str, seconds: float, seed: int = 0) -> np.ndarray:
    """A generated scene's audio in a recording format: FOA, the MIC array, or stereo (L = W + Y, R = W - Y).
    The same seed gives the same scene in every format.

    For benchmarks and parity runs, which need realistic audio but not its labels.
    """
    rendered = "foa" if audio_format == "stereo" else audio_format
    if rendered not in AUDIO_FORMATS:
        raise SeldEdgeError(f"no synthetic {audio_format} recordings: the generator renders foa, mic and stereo")
    audio, _ = generate_scene_formats(seconds, np.random.default_rng(seed), (rendered,))
    return foa_to_stereo(audio["foa"]) if audio_format == "stereo" else audio[rendered]

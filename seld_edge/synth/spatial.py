"""Putting sounds in space: a shoebox room, FOA encoding, early reflections, diffuse background.

Conventions (docs/data.md): ACN channel order W, Y, Z, X with SN3D normalisation, so a plane
wave s from unit direction (x, y, z) gives W = s, Y = y s, Z = z s, X = x s. The direct path sets the
time reference (its propagation delay is not applied, so audio and labels line up); reflections
arrive later by their extra path length.
"""

from dataclasses import dataclass

import numpy as np

SPEED_OF_SOUND = 343.0  # m/s
WALL_MARGIN_M = 0.25  # sources keep this far from the walls
DIFFUSE_CHANNEL_GAINS = 1.0 / np.sqrt([1.0, 3.0, 3.0, 3.0])  # W, Y, Z, X of an isotropic field in SN3D


@dataclass(frozen=True)
class Room:
    """A shoebox room spanning [0, size] on each axis (metres), with the microphone inside it.

    ``reflection`` is the amplitude reflection coefficient of every wall (1 = rigid, 0 = anechoic).
    """

    size: tuple[float, float, float]
    listener: tuple[float, float, float]
    reflection: float


def sample_room(rng: np.random.Generator) -> Room:
    """A random room large enough that a source 1 m away fits in every direction within +-45 deg elevation."""
    size = rng.uniform([6.0, 5.0, 3.0], [12.0, 10.0, 4.5])
    listener = np.array([size[0] / 2, size[1] / 2, 0.0]) + rng.uniform([-1.0, -1.0, 1.2], [1.0, 1.0, 1.8])
    return Room(tuple(size.tolist()), tuple(listener.tolist()), float(rng.uniform(0.4, 0.7)))


def distance_to_walls(room: Room, directions: np.ndarray) -> float:
    """How far a source can be from the listener along every one of (m, 3) unit directions and still
    stay WALL_MARGIN_M inside the room."""
    listener = np.asarray(room.listener)
    room_max = np.asarray(room.size)
    with np.errstate(divide="ignore"):
        to_max = (room_max - listener) / directions
        to_min = -listener / directions
    along = np.where(directions > 0, to_max, np.where(directions < 0, to_min, np.inf))
    return float(np.min(along)) - WALL_MARGIN_M


def encode_foa(sound: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """(4, n) ACN/SN3D FOA of a plane wave: sound (n,) from unit directions (n, 3) in x, y, z."""
    x, y, z = directions.T
    return np.stack([sound, y * sound, z * sound, x * sound])


def spatialise(sound: np.ndarray, positions: np.ndarray, room: Room, sample_rate: int, reflections: bool) -> np.ndarray:
    """(4, len(positions)) FOA of a sound emitted from positions (m, 3) in room coordinates, one per sample."""
    return encode_foa_paths(propagation_paths(sound, positions, room, sample_rate, reflections))


def propagation_paths(
    sound: np.ndarray, positions: np.ndarray, room: Room, sample_rate: int, reflections: bool
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The plane waves that reach the listener: (signal (n,), unit directions (n, 3)) per path.

    The direct path is attenuated by 1/r. With reflections, each of the six walls adds a first-order
    image source: the position mirrored in the wall, attenuated by reflection/distance and delayed by
    its extra path length (fractional delay by linear interpolation, so moving sources stay smooth).
    ``positions`` (one per sample, room coordinates) may be longer than the sound, to hold the
    reflections' tail. Every array format encodes the same paths (FOA here, MIC in mic_array).
    """
    n = len(positions)
    padded = np.zeros(n)
    padded[: len(sound)] = sound
    listener = np.asarray(room.listener)
    offset = positions - listener
    distance = np.linalg.norm(offset, axis=1)
    paths = [(padded / distance, offset / distance[:, None])]
    if not reflections:
        return paths
    index = np.arange(n, dtype=np.float64)
    for axis in range(3):
        for wall in (0.0, room.size[axis]):
            image = offset.copy()
            image[:, axis] = 2.0 * wall - positions[:, axis] - listener[axis]
            image_distance = np.linalg.norm(image, axis=1)
            delay = (image_distance - distance) * sample_rate / SPEED_OF_SOUND
            delayed = np.interp(index - delay, index, padded, left=0.0, right=0.0)
            paths.append((room.reflection * delayed / image_distance, image / image_distance[:, None]))
    return paths


def encode_foa_paths(paths: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(4, n) FOA of the sum of plane-wave paths (signal, directions), as :func:`propagation_paths` gives."""
    foa = encode_foa(*paths[0])
    for path in paths[1:]:
        foa += encode_foa(*path)
    return foa


def reflection_tail(room: Room, sample_rate: int) -> int:
    """Samples by which first-order reflections can outlast the direct sound (an upper bound)."""
    return int(np.ceil(2.0 * np.linalg.norm(room.size) / SPEED_OF_SOUND * sample_rate))


def diffuse_noise(n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """(4, n) isotropic pink background: W at unit RMS, X, Y, Z independent at 1/sqrt(3) of it.

    For a diffuse field in SN3D each directional channel carries a third of W's power (the mean of
    y^2 over the sphere is 1/3), and the channels are uncorrelated, so its intensity vector averages
    to zero and does not bias localisation.
    """
    return pink_noise(4, n, rng, sample_rate) * DIFFUSE_CHANNEL_GAINS[:, None]


def pink_noise(channels: int, n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """(channels, n) independent pink noises (1/f power above 50 Hz, flat below), each at unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal((channels, n)), axis=1)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    noise = np.fft.irfft(spectrum / np.sqrt(np.maximum(freqs, 50.0)), n=n, axis=1)
    noise /= np.sqrt(np.mean(noise**2, axis=1, keepdims=True))
    return noise

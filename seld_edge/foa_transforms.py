"""The 16 first-order-ambisonics rotations and reflections of Mazzon et al. (2019), defined once.

Each transform maps azimuth phi to one of phi + k*90 deg or -phi + k*90 deg (k = 0..3) and elevation
theta to +-theta. On direction vectors (x, y, z) that is a signed permutation matrix M; FOA channels
X, Y, Z transform exactly like (x, y, z) and W is unchanged, so the same M rotates audio, features
(log spectra are permuted, intensity vectors multiplied by M) and labels. Training uses them as data
augmentation; prediction as test-time augmentation (rotate, predict, rotate the outputs back).
"""

from dataclasses import dataclass
from itertools import product

import numpy as np

from seld_edge.formats.dcase_csv import Event
from seld_edge.geometry import polar_to_unit, unit_to_polar

# FOA channel order (ACN): W, Y, Z, X. Index of x, y, z among those channels:
_XYZ_CHANNELS = (3, 1, 2)
_MIRROR = np.diag([1.0, -1.0, 1.0])  # y -> -y, azimuth -> -azimuth: swaps a stereo pair's L and R


@dataclass(frozen=True)
class FoaTransform:
    """A signed 3x3 permutation acting on (x, y, z) directions."""

    matrix: np.ndarray
    name: str

    @property
    def inverse(self) -> "FoaTransform":
        return FoaTransform(self.matrix.T.copy(), f"inverse({self.name})")

    def vectors(self, xyz: np.ndarray) -> np.ndarray:
        """Transform (..., 3) direction vectors."""
        return xyz @ self.matrix.T.astype(xyz.dtype)

    def audio(self, foa: np.ndarray) -> np.ndarray:
        """Transform (4, N) ACN/SN3D audio (W, Y, Z, X)."""
        out = foa.copy()
        out[list(_XYZ_CHANNELS)] = self.matrix.astype(foa.dtype) @ foa[list(_XYZ_CHANNELS)]
        return out

    def features(self, features: np.ndarray) -> np.ndarray:
        """Transform FOA features (4 or 7, T, F): log spectra W, Y, Z, X, then the intensity vector x, y, z
        when there is one.

        A log spectrum only sees |channel|, so signs drop out and the spectra are permuted; the
        intensity vector Re(conj(W) [X, Y, Z]) transforms like a direction.
        """
        if features.shape[0] not in (4, 7):
            raise ValueError(f"FOA features need 4 spectra (+ 3 IV channels), got {features.shape[0]} channels")
        # A signed permutation: output axis i is sign[i] x input axis source[i]. One gather and one
        # multiply instead of a copy and a matrix product (the same numbers: each output has one term).
        source, sign = np.abs(self.matrix).argmax(axis=1), self.matrix.sum(axis=1)
        channels, signs = list(range(features.shape[0])), np.ones(features.shape[0], dtype=features.dtype)
        for axis, channel in enumerate(_XYZ_CHANNELS):
            channels[channel] = _XYZ_CHANNELS[source[axis]]
        if features.shape[0] == 7:
            channels[4:] = [4 + int(a) for a in source]
            signs[4:] = sign
        out = features[channels]
        out *= signs[:, None, None]
        return out

    def stereo_features(self, features: np.ndarray) -> np.ndarray:
        """Transform stereo features (2, T, F), L = W + Y and R = W - Y: only the identity and the
        left-right mirror (y -> -y, which swaps L and R) exist for a stereo pair."""
        if np.array_equal(self.matrix, np.eye(3)):
            return features.copy()
        if np.array_equal(self.matrix, _MIRROR):
            return features[::-1].copy()
        raise ValueError(f"{self.name} is not a stereo transform (only the identity and the left-right mirror are)")

    def events(self, events: list[Event]) -> list[Event]:
        """Events with their directions transformed (distance, class, source unchanged)."""
        if not events:
            return []
        xyz = self.vectors(polar_to_unit([e.azimuth for e in events], [e.elevation for e in events]))
        azimuth, elevation = (np.round(angle, 6).tolist() for angle in unit_to_polar(xyz))
        return [e.with_direction(az, el) for e, az, el in zip(events, azimuth, elevation, strict=True)]


def _azimuth_matrix(quarter_turns: int, mirrored: bool) -> np.ndarray:
    """phi -> (+-phi) + quarter_turns * 90 deg as a 2x2 matrix on (x, y)."""
    c, s = np.round(np.cos(np.pi / 2 * quarter_turns)), np.round(np.sin(np.pi / 2 * quarter_turns))
    rotation = np.array([[c, -s], [s, c]])
    return rotation @ np.diag([1.0, -1.0]) if mirrored else rotation


def _all_transforms() -> tuple[FoaTransform, ...]:
    transforms = []
    for mirrored, quarter_turns, flip_elevation in product((False, True), range(4), (False, True)):
        matrix = np.zeros((3, 3))
        matrix[:2, :2] = _azimuth_matrix(quarter_turns, mirrored)
        matrix[2, 2] = -1.0 if flip_elevation else 1.0
        name = f"az={'-' if mirrored else ''}phi{quarter_turns * 90:+d},el={'-' if flip_elevation else ''}theta"
        transforms.append(FoaTransform(matrix, name))
    return tuple(transforms)


FOA_TRANSFORMS: tuple[FoaTransform, ...] = _all_transforms()  # FOA_TRANSFORMS[0] is the identity
STEREO_TRANSFORMS: tuple[FoaTransform, ...] = tuple(
    t for t in FOA_TRANSFORMS if np.array_equal(t.matrix, np.eye(3)) or np.array_equal(t.matrix, _MIRROR)
)  # the identity and the left-right mirror

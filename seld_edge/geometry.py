"""Direction conventions shared by labels, metrics, the scene generator and augmentation.

DCASE convention: azimuth counter-clockwise from the front (x) in degrees, elevation up from the
horizontal plane in degrees; unit vectors are (x, y, z) with x front, y left, z up.
"""

import numpy as np


def polar_to_unit(azimuth_deg: np.ndarray | float, elevation_deg: np.ndarray | float) -> np.ndarray:
    """Unit vector(s) (..., 3) for DCASE azimuth/elevation in degrees."""
    az = np.deg2rad(np.asarray(azimuth_deg, dtype=np.float64))
    el = np.deg2rad(np.asarray(elevation_deg, dtype=np.float64))
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def unit_to_polar(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation in degrees of (..., 3) vectors (they need not be unit length)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    azimuth = np.rad2deg(np.arctan2(y, x))
    elevation = np.rad2deg(np.arctan2(z, np.hypot(x, y)))
    return azimuth, elevation


def angular_distance_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle angle in degrees between direction vectors a and b (..., 3), any length."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    cos = np.sum(a * b, axis=-1) / np.maximum(na * nb, 1e-12)
    return np.rad2deg(np.arccos(np.clip(cos, -1.0, 1.0)))


def fold_azimuth_front(azimuth_deg: np.ndarray | float) -> np.ndarray:
    """Fold azimuth to [-90, 90] (front-back ambiguity of a stereo pair, DCASE 2025)."""
    az = (np.asarray(azimuth_deg, dtype=np.float64) + 180.0) % 360.0 - 180.0
    return np.where(az > 90.0, 180.0 - az, np.where(az < -90.0, -180.0 - az, az))

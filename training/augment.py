"""Training data augmentation on cached feature chunks (numpy, so it runs in DataLoader workers).

Every augmentation is a callable ``aug(features, events, rng) -> (features, events)`` on one training
chunk: features (C, T, F) float32 and the chunk's 100 ms label events (frames relative to the chunk
start). Spatial augmentations change the labels together with the features; the masks, the
frequency shift and AugMix leave them as they are. All randomness comes from ``rng``, so a seeded generator
gives the same result twice, and the input array is never written to.

Each augmentation fires with its own probability ``p``; :class:`Augment` chains them. A training
config switches them on by name (:func:`build_augmentations`), with ``True`` meaning the defaults of
the paper the method comes from, scaled to the feature kind where the paper counts bins or frames.

Fill values, chosen so that a masked region reads as "nothing here" rather than as a new signal:
log spectra get a level taken from the chunk itself (its per-channel mean for SpecAugment, a random
level between its minimum and maximum for cutout, as in SALSA's code), intensity-vector channels get
0, the vector of no direction. A fixed 0 on a log spectrum would be a loud 0 dB patch instead.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from seld_edge.errors import unknown_name
from seld_edge.features import FeatureConfig, feature_config
from seld_edge.foa_transforms import FOA_TRANSFORMS
from seld_edge.formats.dcase_csv import Event


@dataclass(frozen=True)
class Augmentation(ABC):
    """Base class: applies :meth:`apply` with probability p, otherwise returns its input untouched."""

    p: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {self.p}")

    def __call__(
        self, features: np.ndarray, events: list[Event], rng: np.random.Generator
    ) -> tuple[np.ndarray, list[Event]]:
        """The augmented (features, events), or the inputs themselves when the p draw says skip.

        The draw is made even for p = 1 so that switching p does not shift the rest of the stream.
        """
        if features.ndim != 3:
            raise ValueError(f"{type(self).__name__}: expected features (C, T, F), got shape {features.shape}")
        if rng.random() >= self.p:
            return features, events
        return self.apply(np.asarray(features, dtype=np.float32), events, rng)

    @abstractmethod
    def apply(
        self, features: np.ndarray, events: list[Event], rng: np.random.Generator
    ) -> tuple[np.ndarray, list[Event]]:
        """Always augment; returns a new array."""


@dataclass(frozen=True)
class FoaRotation(Augmentation):
    """One of the 16 FOA rotations/reflections of Mazzon et al. (2019), drawn uniformly (identity
    included), applied to the 7-channel features and the labels by the same matrix."""

    def apply(
        self, features: np.ndarray, events: list[Event], rng: np.random.Generator
    ) -> tuple[np.ndarray, list[Event]]:
        transform = FOA_TRANSFORMS[rng.integers(len(FOA_TRANSFORMS))]
        return transform.features(features), transform.events(events)


@dataclass(frozen=True)
class ChannelSwap(Augmentation):
    """Stereo left-right swap. L = W + Y and R = W - Y, so swapping them is the mirror y -> -y:
    azimuth -> -azimuth, elevation and distance unchanged."""

    p: float = 0.5

    def apply(
        self, features: np.ndarray, events: list[Event], rng: np.random.Generator
    ) -> tuple[np.ndarray, list[Event]]:
        if features.shape[0] != 2:
            raise ValueError(f"channel swap needs 2-channel stereo features (L, R), got {features.shape[0]}")
        # "+ 0.0" turns -0.0 into 0.0, so an event straight ahead is still written as 0.
        mirrored = [replace(e, azimuth=-e.azimuth + 0.0) for e in events]
        return features[::-1].copy(), mirrored


@dataclass(frozen=True)
class SpecAugment(Augmentation):
    """Time and frequency masks of Park et al. (2019): each mask has a width drawn uniformly from
    0..max and a uniform start, and covers all channels. Log spectra are filled with their per-channel
    mean over the chunk (Park et al. mask normalised features with 0, their mean); intensity-vector
    channels (those after ``spectral_channels``) with 0. Labels are unchanged."""

    time_masks: int = 2
    time_width: int = 50
    freq_masks: int = 2
    freq_width: int = 22
    spectral_channels: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("time_masks", "time_width", "freq_masks", "freq_width"):
            _check_int(type(self).__name__, name, getattr(self, name), minimum=0)
        _check_int(type(self).__name__, "spectral_channels", self.spectral_channels, minimum=1)

    def apply(
        self, features: np.ndarray, events: list[Event], rng: np.random.Generator
    ) -> tuple[np.ndarray, list[Event]]:
        fill = np.zeros((features.shape[0], 1, 1), dtype=np.float32)
        fill[: self.spectral_channels] = features[: self.spectral_channels].mean(axis=(1, 2), keepdims=True)
        out = features.copy()
        n_frames, n_bins = features.shape[1:]
        for _ in range(self.time_masks):
            start, stop = _random_span(n_frames, self.time_width, rng)
            out[:, start:stop, :] = fill
        for _ in range(self.freq_masks):
            start, stop = _random_span(n_bins, self.freq_width, rng)
            out[:, :, start:stop] = fill
        return out, events


def _random_span(size: int, max_width: int, rng: np.random.Generator) -> tuple[int, int]:
    width = int(rng.integers(min(max_width, size) + 1))
    start = int(rng.integers(size - width + 1))
    return start, start + width


@dataclass(frozen=True)
class Cutout(Augmentation):
    """Random cutout (random erasing, Zhong et al. 2020; 'random cutout' of SALSA and the DCASE
    2021-2022 top systems): one rectangle in time-frequency on all channels, labels unchanged.

    Its area is a fraction of the chunk drawn from ``area``; its aspect ratio, drawn from ``aspect``,
    is (time fraction) / (frequency fraction), so 1 is a hole of the chunk's own shape whatever the
    number of frames and bins; the rectangle is clipped to the chunk. Log spectra are filled with one
    level drawn uniformly between their minimum and maximum over the chunk (SALSA), the same for every
    spectral channel so the hole carries no level difference between channels; intensity-vector
    channels with 0.
    """

    p: float = 0.5
    area: tuple[float, float] = (0.02, 0.4)
    aspect: tuple[float, float] = (0.3, 1 / 0.3)
    spectral_channels: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if not (len(self.area) == 2 and 0.0 < self.area[0] <= self.area[1] <= 1.0):
            raise ValueError(f"{name}: area must be (low, high) with 0 < low <= high <= 1, got {self.area}")
        if not (len(self.aspect) == 2 and 0.0 < self.aspect[0] <= self.aspect[1]):
            raise ValueError(f"{name}: aspect must be (low, high) with 0 < low <= high, got {self.aspect}")
        _check_int(name, "spectral_channels", self.spectral_channels, minimum=1)

    def apply(
        self, features: np.ndarray, events: list[Event], rng: np.random.Generator
    ) -> tuple[np.ndarray, list[Event]]:
        n_frames, n_bins = features.shape[1:]
        area = rng.uniform(*self.area)
        aspect = rng.uniform(*self.aspect)
        height = min(n_frames, max(1, round(n_frames * np.sqrt(area * aspect))))
        width = min(n_bins, max(1, round(n_bins * np.sqrt(area / aspect))))
        top = int(rng.integers(n_frames - height + 1))
        left = int(rng.integers(n_bins - width + 1))
        spectra = features[: self.spectral_channels]
        hole = (slice(None), slice(top, top + height), slice(left, left + width))
        out = features.copy()
        out[hole] = 0.0
        out[: self.spectral_channels][hole] = rng.uniform(spectra.min(), spectra.max())
        return out, events


@dataclass(frozen=True)
class FreqShift(Augmentation):
    """Shift all channels up or down by k bins, k drawn uniformly from 1..max_bins and the direction
    by a fair coin (SALSA's RandomShiftUpDownNp, used by FFMamba, GLFER-Net and Stereo-RCnet).

    The bins uncovered at the edge repeat the edge bin (numpy 'edge' padding): a copy of a real
    bin keeps the chunk's level and direction there, where zeros would be a loud 0 dB band on log
    spectra. Intensity vectors move with their spectra, so each bin keeps its own direction.
    """

    p: float = 0.5
    max_bins: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int(type(self).__name__, "max_bins", self.max_bins, minimum=1)

    def apply(
        self, features: np.ndarray, events: list[Event], rng: np.random.Generator
    ) -> tuple[np.ndarray, list[Event]]:
        shift = int(rng.integers(1, self.max_bins + 1))
        n_bins = features.shape[2]
        if rng.random() < 0.5:  # up: bin f takes bin f - shift
            out = np.pad(features, ((0, 0), (0, 0), (shift, 0)), mode="edge")[:, :, :n_bins]
        else:  # down: bin f takes bin f + shift
            out = np.pad(features, ((0, 0), (0, 0), (0, shift)), mode="edge")[:, :, -n_bins:]
        return np.ascontiguousarray(out), events


AUGMIX_OPS = ("gain", "filter", "freq_shift", "time_mask", "freq_mask")


@dataclass(frozen=True)
class AugMix(Augmentation):
    """AugMix (Hendrycks et al. 2020, their Algorithm 1) on spectrogram features; labels unchanged.

    ``width`` chains (k = 3), each of 1 to ``max_depth`` ops drawn uniformly from ``ops`` (depth drawn
    uniformly too, as their default), each op with its own random magnitude; the chains' outputs are
    mixed with weights w ~ Dirichlet(alpha, ..., alpha) and the mixture blended with the original by
    m ~ Beta(alpha, alpha): out = (1 - m) x + m sum_i w_i chain_i(x) (:func:`augmix_blend`; alpha = 1).
    The paper's Algorithm 1 writes m x + (1 - m) mix, the same distribution for a symmetric Beta; the
    form here, as their reference code, makes m = 0 the input itself. Stereo-RCnet applies AugMix
    among its augmentations (section 2.4). The paper's Jensen-Shannon consistency loss between the clean
    and two AugMix views is not used: it needs three forward passes per chunk in the training loop, and
    Stereo-RCnet names AugMix as a data augmentation only.

    The ops replace the image ops (rotate, shear, posterize, ...) with ones that keep a spectrogram's
    labels, and act on every channel alike, so the level difference between channels, the direction
    cue of stereo log-mel, is kept:

    - ``gain``: one level added to every log spectrum, uniform in +-max_gain_db;
    - ``filter``: a random equaliser, after FilterAugment (Nam et al. 2022): a piecewise-linear gain in dB
      over frequency through 3 to 6 levels uniform in +-max_filter_db at evenly spaced bins;
    - ``freq_shift``, ``time_mask``, ``freq_mask``: :class:`FreqShift` (up to max_shift_bins) and one
      time or frequency mask of :class:`SpecAugment` (up to time_width frames, freq_width bins).

    Left out: time stretching or shifting (an event would leave its 100 ms label frames), channel swaps
    and per-channel gains or contrast (they change the inter-channel level differences, so the azimuth),
    and mixing in other clips (their events would need labels). Gains and filters change log spectra
    only: intensity-vector channels (those after ``spectral_channels``) keep their values there.
    """

    p: float = 1.0
    width: int = 3
    max_depth: int = 3
    alpha: float = 1.0
    ops: tuple[str, ...] = AUGMIX_OPS
    max_gain_db: float = 6.0
    max_filter_db: float = 6.0
    max_shift_bins: int = 5
    time_width: int = 50
    freq_width: int = 22
    spectral_channels: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        for field_name in ("width", "max_depth", "max_shift_bins", "spectral_channels"):
            _check_int(name, field_name, getattr(self, field_name), minimum=1)
        for field_name in ("time_width", "freq_width"):
            _check_int(name, field_name, getattr(self, field_name), minimum=0)
        if not self.alpha > 0.0:
            raise ValueError(f"{name}: alpha must be > 0, got {self.alpha}")
        for field_name in ("max_gain_db", "max_filter_db"):
            if not getattr(self, field_name) >= 0.0:
                raise ValueError(f"{name}: {field_name} must be >= 0, got {getattr(self, field_name)}")
        unknown = sorted(set(self.ops) - set(AUGMIX_OPS))
        if not self.ops or unknown:
            raise ValueError(f"{name}: ops must be some of {', '.join(AUGMIX_OPS)}, got {list(self.ops)}")

    def apply(
        self, features: np.ndarray, events: list[Event], rng: np.random.Generator
    ) -> tuple[np.ndarray, list[Event]]:
        weights = rng.dirichlet([self.alpha] * self.width)
        m = rng.beta(self.alpha, self.alpha)
        chains = [self.chain(features, events, rng) for _ in range(self.width)]
        return augmix_blend(features, chains, weights, m), events

    def chain(self, features: np.ndarray, events: list[Event], rng: np.random.Generator) -> np.ndarray:
        """One augmentation chain: 1 to max_depth ops, each drawn uniformly from ``ops``."""
        out = features
        for _ in range(int(rng.integers(1, self.max_depth + 1))):
            out = _AUGMIX_OPS[self.ops[int(rng.integers(len(self.ops)))]](self, out, events, rng)
        return out


def augmix_blend(original: np.ndarray, chains: list[np.ndarray], weights: np.ndarray, m: float) -> np.ndarray:
    """(1 - m) * original + m * sum_i weights[i] * chains[i], float32; m = 0 gives the original's values."""
    mixture = sum(float(w) * chain.astype(np.float64) for w, chain in zip(weights, chains, strict=True))
    return ((1.0 - m) * original.astype(np.float64) + m * mixture).astype(np.float32)


def _add_to_spectra(aug: AugMix, features: np.ndarray, level: np.ndarray | float) -> np.ndarray:
    out = features.copy()
    out[: aug.spectral_channels] += level
    return out


def _gain(aug: AugMix, features: np.ndarray, events: list[Event], rng: np.random.Generator) -> np.ndarray:
    return _add_to_spectra(aug, features, np.float32(rng.uniform(-aug.max_gain_db, aug.max_gain_db)))


def _filter(aug: AugMix, features: np.ndarray, events: list[Event], rng: np.random.Generator) -> np.ndarray:
    n_bins = features.shape[2]
    points = int(rng.integers(3, 7))
    levels = rng.uniform(-aug.max_filter_db, aug.max_filter_db, points)
    curve = np.interp(np.arange(n_bins), np.linspace(0, n_bins - 1, points), levels).astype(np.float32)
    return _add_to_spectra(aug, features, curve)


def _freq_shift_op(aug: AugMix, features: np.ndarray, events: list[Event], rng: np.random.Generator) -> np.ndarray:
    return FreqShift(max_bins=aug.max_shift_bins).apply(features, events, rng)[0]


def _time_mask(aug: AugMix, features: np.ndarray, events: list[Event], rng: np.random.Generator) -> np.ndarray:
    mask = SpecAugment(time_masks=1, time_width=aug.time_width, freq_masks=0, spectral_channels=aug.spectral_channels)
    return mask.apply(features, events, rng)[0]


def _freq_mask(aug: AugMix, features: np.ndarray, events: list[Event], rng: np.random.Generator) -> np.ndarray:
    mask = SpecAugment(time_masks=0, freq_masks=1, freq_width=aug.freq_width, spectral_channels=aug.spectral_channels)
    return mask.apply(features, events, rng)[0]


_AUGMIX_OPS: dict[str, Callable[[AugMix, np.ndarray, list[Event], np.random.Generator], np.ndarray]] = {
    "gain": _gain,
    "filter": _filter,
    "freq_shift": _freq_shift_op,
    "time_mask": _time_mask,
    "freq_mask": _freq_mask,
}


def _check_int(owner: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class Augment:
    """An ordered chain of augmentations, each firing with its own probability."""

    augmentations: tuple[Augmentation, ...]

    def __call__(
        self, features: np.ndarray, events: list[Event], rng: np.random.Generator
    ) -> tuple[np.ndarray, list[Event]]:
        for augmentation in self.augmentations:
            features, events = augmentation(features, events, rng)
        return features, events


def _foa_rotation(config: FeatureConfig, options: Mapping[str, Any]) -> Augmentation:
    if config.in_channels != 4 or config.iv_norm is None:
        raise ValueError(
            f"foa_rotation needs FOA features with intensity vectors (4 spectra + IV x, y, z); feature kind "
            f"{config.kind!r} has {config.out_channels} channels"
            + (" (stereo: use channel_swap)" if config.in_channels == 2 else "")
        )
    return FoaRotation(**_options("foa_rotation", FoaRotation, {}, options))


def _channel_swap(config: FeatureConfig, options: Mapping[str, Any]) -> Augmentation:
    if config.in_channels != 2 or config.iv_norm is not None:
        raise ValueError(
            f"channel_swap applies to 2-channel stereo features (L, R); feature kind {config.kind!r} has "
            f"{config.out_channels} channels (FOA: use foa_rotation, whose 16 transforms include the left-right mirror)"
        )
    return ChannelSwap(**_options("channel_swap", ChannelSwap, {}, options))


def _mask_widths(config: FeatureConfig) -> dict[str, int]:
    # Park et al.'s LibriSpeech 'LD' policy: 2 frequency masks up to 27 of 80 mel bins, 2 time masks up
    # to 100 frames of 10 ms; here the same fraction of the bins and the same 1 s of frames.
    return {"freq_width": round(27 / 80 * config.n_bins), "time_width": round(config.sample_rate / config.hop_length)}


def _shift_bins(config: FeatureConfig) -> int:
    # SALSA's default range: 8 % of the frequency bins.
    return max(1, round(0.08 * config.n_bins))


def _spec_augment(config: FeatureConfig, options: Mapping[str, Any]) -> Augmentation:
    defaults = _mask_widths(config)
    return SpecAugment(spectral_channels=config.in_channels, **_options("spec_augment", SpecAugment, defaults, options))


def _cutout(config: FeatureConfig, options: Mapping[str, Any]) -> Augmentation:
    values = _options("cutout", Cutout, {}, options)
    values = {key: tuple(value) if key in ("area", "aspect") else value for key, value in values.items()}
    return Cutout(spectral_channels=config.in_channels, **values)


def _freq_shift(config: FeatureConfig, options: Mapping[str, Any]) -> Augmentation:
    return FreqShift(**_options("freq_shift", FreqShift, {"max_bins": _shift_bins(config)}, options))


def _augmix(config: FeatureConfig, options: Mapping[str, Any]) -> Augmentation:
    # Its shift and masks default to the ranges of freq_shift and spec_augment for the feature kind.
    defaults = {"max_shift_bins": _shift_bins(config), **_mask_widths(config)}
    values = _options("augmix", AugMix, defaults, options)
    if "ops" in values:
        values["ops"] = tuple(values["ops"])
    return AugMix(spectral_channels=config.in_channels, **values)


# Application order: the spatial transforms first, then the frequency shift and AugMix, then the masks,
# so a masked region stays exactly the rectangle (and the fill) that the mask drew.
_BUILDERS: dict[str, Callable[[FeatureConfig, Mapping[str, Any]], Augmentation]] = {
    "foa_rotation": _foa_rotation,
    "channel_swap": _channel_swap,
    "freq_shift": _freq_shift,
    "augmix": _augmix,
    "spec_augment": _spec_augment,
    "cutout": _cutout,
}
AUGMENTATIONS: tuple[str, ...] = tuple(_BUILDERS)

# Filled from the feature config, not from the user's settings.
_DERIVED_FIELDS = ("spectral_channels",)


def _options(
    name: str, cls: type[Augmentation], defaults: Mapping[str, Any], given: Mapping[str, Any]
) -> dict[str, Any]:
    """The user's options over the kind-specific defaults, with unknown option names rejected."""
    known = sorted(f.name for f in fields(cls) if f.name not in _DERIVED_FIELDS)
    for key in sorted(set(given) - set(known)):
        raise unknown_name(f"{name} option", key, known)
    return {**defaults, **given}


def build_augmentations(settings: Mapping[str, Any], feature_kind: str) -> Augment | None:
    """The chain of augmentations a training config asks for, or None when all are off.

    ``settings`` maps augmentation names to False/None (off), True (defaults) or a mapping of options
    overriding the defaults, e.g. ``{"foa_rotation": True, "freq_shift": {"max_bins": 8, "p": 0.5}}``.
    Names are checked here, when the run starts, not in a DataLoader worker an epoch later.
    """
    for key in sorted(set(settings) - set(_BUILDERS)):
        raise unknown_name("augmentation", key, AUGMENTATIONS)
    config = feature_config(feature_kind)
    chain = []
    for name, build in _BUILDERS.items():
        value = settings.get(name)
        if value is None or value is False:
            continue
        if value is True:
            value = {}
        if not isinstance(value, Mapping):
            raise ValueError(f"augmentation {name} must be true, false or a mapping of options, got {value!r}")
        chain.append(build(config, value))
    return Augment(tuple(chain)) if chain else None

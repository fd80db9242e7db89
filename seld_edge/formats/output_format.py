"""Output formats: how a model's outputs relate to DCASE events, one object per format.

A format object (a frozen dataclass whose fields are its options, e.g. ``with_distance``) knows
everything the rest of the package needs about a layout of model outputs:

- ``outputs`` / ``targets``: the names of the arrays a model returns and the encoder builds;
- :meth:`~OutputFormat.encode`: events -> training targets;
- :meth:`~OutputFormat.decode`: outputs -> events, with thresholds and the other settings taken from
  a :class:`seld_edge.postprocess.PostProcessing`;
- :meth:`~OutputFormat.transform`: outputs under a spatial transform (test-time augmentation), or an
  error saying it has none;
- ``csv_form``: the DCASE CSV form its events are written in;
- ``default_loss``: the loss it trains with unless the model card says otherwise (names of
  ``training.losses``);
- :meth:`~OutputFormat.loss_view`: which output/target arrays hold activity, direction vectors and
  distances, for the generic losses (written with ``reshape`` and slicing only, so it works on numpy
  arrays and torch tensors alike while this module stays torch-free).

Arrays are (T, ...) per clip for encode/decode/transform, and (B, T, ...) in loss views; T frames at
the model's label rate, C classes. Distances are metres throughout. Formats register by name
(:func:`register_format`); :func:`get_output_format` builds one with options, refusing unknown names
and options with suggestions. Nothing outside a format's own class switches on its name.
"""

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import groupby
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from seld_edge.errors import SeldEdgeError, unknown_name
from seld_edge.formats.dcase_csv import Event
from seld_edge.geometry import polar_to_unit, unit_to_polar

if TYPE_CHECKING:
    from seld_edge.foa_transforms import FoaTransform
    from seld_edge.postprocess import PostProcessing

Thresholds = float | Sequence[float] | np.ndarray
"""An activity threshold for every class, or a sequence of one per class."""

LossSpec = Mapping[str, float | Mapping[str, Any]]
"""Loss terms by name: a weight, or a mapping with ``weight`` and the term's options."""


@dataclass(frozen=True)
class LossView:
    """The arrays generic losses work on, as views of a format's outputs and targets.

    activity: (predicted probabilities, target in {0, 1}), both (B, T, C), or None where the format
        predicts no activity (ACCDOA: the vector norm is the activity).
    vectors: (predicted, target) direction vectors (B, T, A, C), A coordinates on axis -2; for ACCDOA
        formats the target is activity times the unit direction; None for activity alone (``sed``).
    active: the target activity (B, T, 1, C) that masks vector and distance errors.
    distance: (predicted, target) metres (B, T, C), or None without distance.
    """

    vectors: tuple[Any, Any] | None = None
    active: Any = None
    activity: tuple[Any, Any] | None = None
    distance: tuple[Any, Any] | None = None


@dataclass(frozen=True)
class OutputFormat(ABC):
    """Base of every output format; subclasses are frozen dataclasses whose fields are the options."""

    name: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]]
    targets: ClassVar[tuple[str, ...]]
    csv_form: ClassVar[str] = "cartesian"
    default_loss: ClassVar[LossSpec]
    decodable: ClassVar[bool] = True  # False: half of SELD (sed, doa), events only once composed

    @abstractmethod
    def encode(self, events: Iterable[Event], n_frames: int, num_classes: int) -> dict[str, np.ndarray]:
        """Training targets by name for a clip of n_frames label frames."""

    @abstractmethod
    def decode(self, outputs: Mapping[str, np.ndarray], num_classes: int, settings: "PostProcessing") -> list[Event]:
        """Events from (smoothed) outputs, sorted by (frame, class, source); sources numbered 0, 1, ..."""

    def transform(self, outputs: Mapping[str, np.ndarray], num_classes: int, transform: "FoaTransform") -> dict:
        """Outputs with their directions transformed (test-time augmentation); other arrays pass through."""
        raise SeldEdgeError(f"the {self.name} format has no spatial transform: test-time augmentation needs one")

    @abstractmethod
    def loss_view(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> LossView:
        """Activity, vectors and distances of a batch, for the generic losses."""

    def oracle(
        self, outputs: Mapping[str, np.ndarray], events: Iterable[Event], num_classes: int
    ) -> tuple["OutputFormat", dict[str, np.ndarray]]:
        """A format that can decode, and outputs for it: these outputs completed with the reference events
        where this format predicts only part of SELD (a SED-only or DOA-only network), for validation."""
        return self, dict(outputs)

    def dropped(self, events: Iterable[Event]) -> int:
        """How many of these (valid) events the encoder cannot represent: by default a format holds one
        event per class and frame, keeping the lowest source id."""
        counts = Counter((e.frame, e.class_index) for e in events)
        return sum(n - 1 for n in counts.values())

    def outputs_of(self, outputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The format's output arrays in order, as float64; a missing one is a model/format mismatch."""
        missing = [name for name in self.outputs if name not in outputs]
        if missing:
            raise SeldEdgeError(f"the {self.name} format needs model outputs {list(self.outputs)}, missing {missing}")
        return [np.asarray(outputs[name], dtype=np.float64) for name in self.outputs]

    def options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


F = TypeVar("F", bound=type[OutputFormat])
OUTPUT_FORMATS: dict[str, type[OutputFormat]] = {}


def register_format(cls: F) -> F:
    """Class decorator: make a format buildable by its ``name`` with :func:`get_output_format`."""
    if cls.name in OUTPUT_FORMATS:
        raise ValueError(f"output format {cls.name!r} registered twice")
    OUTPUT_FORMATS[cls.name] = cls
    return cls


def get_output_format(name: str, **options: Any) -> OutputFormat:
    """The format called name with options; an unknown name or option (e.g. from a model file) is a user error."""
    if name not in OUTPUT_FORMATS:
        raise unknown_name("output format", name, OUTPUT_FORMATS)
    cls = OUTPUT_FORMATS[name]
    known = [f.name for f in fields(cls)]
    for key in options:
        if key not in known:
            raise unknown_name(f"{name} option", key, known) if known else SeldEdgeError(f"{name} takes no options")
    return cls(**options)


# --------------------------------------------------------------------------------------------------
# helpers shared by the formats


def checked_events(
    events: Iterable[Event], n_frames: int, num_classes: int, with_distance: bool = False
) -> list[Event]:
    """Validate events against the clip and class list; sorted by (frame, class, source).

    A frame past the end means the metadata and the audio disagree (the data loader reports it with
    the file name), so this is a user error rather than something to drop silently as the baseline does.
    """
    checked = sorted(events, key=lambda e: (e.frame, e.class_index, e.source))
    for e in checked:
        if not 0 <= e.frame < n_frames:
            raise SeldEdgeError(
                f"event at frame {e.frame} (class {e.class_index}) lies outside the clip, "
                f"which has {n_frames} label frames (0..{n_frames - 1})"
            )
        if not 0 <= e.class_index < num_classes:
            raise SeldEdgeError(
                f"event at frame {e.frame} has class {e.class_index}, out of range for {num_classes} classes"
            )
        if with_distance and e.distance is None:
            raise SeldEdgeError(
                f"event at frame {e.frame} (class {e.class_index}) has no distance, but the labels need one"
            )
    return checked


def lowest_source_per_class(events: list[Event]) -> list[Event]:
    """From events sorted by (frame, class, source), the first of each (frame, class): formats with one
    slot per class keep the lowest source id."""
    return [next(group) for _, group in groupby(events, key=lambda e: (e.frame, e.class_index))]


def directions(events: Sequence[Event]) -> np.ndarray:
    """Unit vectors (N, 3) of the events."""
    return polar_to_unit([e.azimuth for e in events], [e.elevation for e in events]).reshape(len(events), 3)


def class_thresholds(threshold: Thresholds, num_classes: int) -> np.ndarray:
    """Thresholds as a (C,) array that broadcasts over a class axis.

    A length mismatch means the settings were tuned for another class list (say, a model file's
    metadata against a different class list), which is a user error.
    """
    values = np.asarray(threshold, dtype=np.float64)
    if values.ndim == 0:
        return np.full(num_classes, float(values))
    if values.shape != (num_classes,):
        raise SeldEdgeError(f"got {values.size} per-class thresholds for {num_classes} classes")
    return values


def check_shape(array: np.ndarray, expected: tuple[int | None, ...], what: str) -> None:
    """Raise SeldEdgeError unless array matches expected (None = any size)."""
    if array.ndim != len(expected) or any(e is not None and s != e for s, e in zip(array.shape, expected, strict=True)):
        shown = tuple("T" if e is None else e for e in expected)
        raise SeldEdgeError(f"{what} has shape {array.shape}, expected {shown}")


def make_event(frame: int, class_index: int, source: int, vector: np.ndarray, distance: float | None) -> Event:
    """An event pointing along vector (any length); a 2-D vector (x, y) has elevation 0."""
    xyz = np.zeros(3)
    xyz[: len(vector)] = vector
    azimuth, elevation = unit_to_polar(xyz)
    return Event(
        int(frame),
        int(class_index),
        int(source),
        float(azimuth),
        float(elevation),
        None if distance is None else float(distance),
    )


def transformed_class_blocks(array: np.ndarray, coords: int, num_classes: int, transform: Callable) -> np.ndarray:
    """Apply ``transform`` to the xyz of an output (T, K*coords*C) laid out [track][coordinate][class].

    Coordinates past the third (a distance) are left alone: rotations and reflections do not move a
    source nearer or farther.
    """
    blocks = array.reshape(array.shape[0], -1, coords, num_classes).copy()
    xyz = np.moveaxis(blocks[:, :, :3], 2, -1)  # (T, K, C, 3)
    blocks[:, :, :3] = np.moveaxis(transform(xyz), -1, 2)
    return blocks.reshape(array.shape)

"""Formats with a separate activity per class: ``sed_doa`` and the two halves of a two-network model.

``sed_doa``
    GLFER-Net, FFMamba, and the composed M2M-AST: class activity (T, C) probabilities and one direction
    per class (T, 3*C) ordered [coordinate][class]. A class is active when its probability exceeds its
    threshold; its direction is the vector's, whatever its length.
``sed``
    The SED network of a two-network model (M2M-AST's first): activity (T, C) only.
``doa``
    Its DOA network: ACCDOA-style vectors (T, 3*C), the unit direction where a class is active and zero
    elsewhere, the same array as ``sed_doa``'s doa target.

``sed`` and ``doa`` cannot make events alone. Composed (:class:`seld_edge.models.CompositeSystem`)
their outputs are ``sed_doa``'s. For validating one of them while it trains, :meth:`oracle` completes
its outputs with the reference's other half (reference directions for a SED network, reference
activity for a DOA network), so the DCASE metric then measures the half that was predicted.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from seld_edge.errors import SeldEdgeError
from seld_edge.formats.dcase_csv import Event
from seld_edge.formats.output_format import (
    LossView,
    OutputFormat,
    check_shape,
    checked_events,
    class_thresholds,
    directions,
    lowest_source_per_class,
    make_event,
    register_format,
    transformed_class_blocks,
)

if TYPE_CHECKING:
    from seld_edge.foa_transforms import FoaTransform
    from seld_edge.postprocess import PostProcessing


def _encode(events: Iterable[Event], n_frames: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """sed (T, C) in {0, 1} and doa (T, 3*C) unit vectors where active; one direction per class (the
    lowest source id of same-class events in a frame)."""
    kept = lowest_source_per_class(checked_events(events, n_frames, num_classes))
    sed = np.zeros((n_frames, num_classes), dtype=np.float32)
    doa = np.zeros((n_frames, 3, num_classes), dtype=np.float32)
    if kept:
        frames = np.array([e.frame for e in kept])
        classes = np.array([e.class_index for e in kept])
        sed[frames, classes] = 1.0
        doa[frames, :, classes] = directions(kept)
    return sed, doa.reshape(n_frames, -1)


def _rotated_doa(outputs: Mapping[str, np.ndarray], num_classes: int, transform: "FoaTransform") -> dict:
    doa = np.asarray(outputs["doa"])
    check_shape(doa, (None, 3 * num_classes), "DOA output")
    return {**outputs, "doa": transformed_class_blocks(doa, 3, num_classes, transform.vectors)}


def _doa_view(output: Any, target: Any) -> tuple[Any, Any]:
    return output.reshape(*output.shape[:-1], 3, -1), target.reshape(*target.shape[:-1], 3, -1)


@register_format
@dataclass(frozen=True)
class SedDoa(OutputFormat):
    """``sed_doa``: sed (T, C) and doa (T, 3*C); see the module docstring."""

    name: ClassVar[str] = "sed_doa"
    outputs: ClassVar[tuple[str, ...]] = ("sed", "doa")
    targets: ClassVar[tuple[str, ...]] = ("sed", "doa")
    # GLFER-Net's loss (eq. 10), borrowed by FFMamba: 0.3 BCE + 0.7 MSE on active classes.
    default_loss: ClassVar = {"bce": 0.3, "masked_mse": 0.7}

    def encode(self, events: Iterable[Event], n_frames: int, num_classes: int) -> dict[str, np.ndarray]:
        sed, doa = _encode(events, n_frames, num_classes)
        return {"sed": sed, "doa": doa}

    def decode(self, outputs: Mapping[str, np.ndarray], num_classes: int, settings: "PostProcessing") -> list[Event]:
        sed, doa = self.outputs_of(outputs)
        check_shape(sed, (None, num_classes), "SED output")
        check_shape(doa, (sed.shape[0], 3 * num_classes), "DOA output")
        vectors = doa.reshape(sed.shape[0], 3, num_classes)
        active = sed > class_thresholds(settings.thresholds, num_classes)
        return [make_event(frame, c, 0, vectors[frame, :, c], None) for frame, c in np.argwhere(active)]

    def transform(self, outputs: Mapping[str, np.ndarray], num_classes: int, transform: "FoaTransform") -> dict:
        return _rotated_doa(outputs, num_classes, transform)

    def loss_view(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> LossView:
        return LossView(
            vectors=_doa_view(outputs["doa"], targets["doa"]),
            active=targets["sed"][..., None, :],
            activity=(outputs["sed"], targets["sed"]),
        )


@register_format
@dataclass(frozen=True)
class Sed(OutputFormat):
    """``sed``: activity (T, C) of a SED network; see the module docstring."""

    name: ClassVar[str] = "sed"
    outputs: ClassVar[tuple[str, ...]] = ("sed",)
    targets: ClassVar[tuple[str, ...]] = ("sed",)
    default_loss: ClassVar = {"bce": 1.0}
    decodable: ClassVar[bool] = False

    def encode(self, events: Iterable[Event], n_frames: int, num_classes: int) -> dict[str, np.ndarray]:
        return {"sed": _encode(events, n_frames, num_classes)[0]}

    def decode(self, outputs: Mapping[str, np.ndarray], num_classes: int, settings: "PostProcessing") -> list[Event]:
        raise SeldEdgeError(
            "a SED-only network gives no directions: compose it with its DOA network (seld-edge compose)"
        )

    def oracle(
        self, outputs: Mapping[str, np.ndarray], events: Iterable[Event], num_classes: int
    ) -> tuple[OutputFormat, dict[str, np.ndarray]]:
        (sed,) = self.outputs_of(outputs)
        return SedDoa(), {"sed": sed, "doa": _encode(events, len(sed), num_classes)[1]}

    def transform(self, outputs: Mapping[str, np.ndarray], num_classes: int, transform: "FoaTransform") -> dict:
        return dict(outputs)  # activity does not depend on direction

    def loss_view(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> LossView:
        return LossView(activity=(outputs["sed"], targets["sed"]))


@register_format
@dataclass(frozen=True)
class Doa(OutputFormat):
    """``doa``: ACCDOA-style vectors (T, 3*C) of a DOA network; see the module docstring."""

    name: ClassVar[str] = "doa"
    outputs: ClassVar[tuple[str, ...]] = ("doa",)
    targets: ClassVar[tuple[str, ...]] = ("doa",)
    default_loss: ClassVar = {"mse": 1.0}
    decodable: ClassVar[bool] = False

    def encode(self, events: Iterable[Event], n_frames: int, num_classes: int) -> dict[str, np.ndarray]:
        return {"doa": _encode(events, n_frames, num_classes)[1]}

    def decode(self, outputs: Mapping[str, np.ndarray], num_classes: int, settings: "PostProcessing") -> list[Event]:
        raise SeldEdgeError("a DOA-only network gives no activity: compose it with its SED network (seld-edge compose)")

    def oracle(
        self, outputs: Mapping[str, np.ndarray], events: Iterable[Event], num_classes: int
    ) -> tuple[OutputFormat, dict[str, np.ndarray]]:
        (doa,) = self.outputs_of(outputs)
        return SedDoa(), {"sed": _encode(events, len(doa), num_classes)[0], "doa": doa}

    def transform(self, outputs: Mapping[str, np.ndarray], num_classes: int, transform: "FoaTransform") -> dict:
        return _rotated_doa(outputs, num_classes, transform)

    def loss_view(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> LossView:
        vectors = _doa_view(outputs["doa"], targets["doa"])
        return LossView(vectors=vectors, active=(vectors[1] ** 2).sum(axis=-2, keepdims=True) > 0)

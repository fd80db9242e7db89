"""The metadata every exported model carries (ONNX metadata_props, or a JSON sidecar of an engine).

Written by the exporter, read by the torch-free runtime: with it, `seld-edge run MODEL` needs nothing
but the model file. Keys are prefixed ``seld_edge.`` so they never collide with other tools' props.

A graph takes one feature tensor per input, (batch, channels, frames, bins) float32 raw features (the
normaliser is inside the graph): a single network's input is named :data:`INPUT_NAME`; a composite's
inputs are named after its parts (``features_sed``, ``features_doa``) and may read different
recordings of a clip (M2M-AST: the MIC array for SED, FOA for DOA). Its outputs carry the output
format's names. Every field is checked on reading, so a damaged or hand-edited file fails in one line
naming the field instead of deep inside a run.
"""

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from seld_edge.errors import SeldEdgeError
from seld_edge.features import FeatureConfig
from seld_edge.formats import OutputFormat, get_output_format
from seld_edge.formats.label_rate import rate_ratio
from seld_edge.formats.output_format import class_thresholds
from seld_edge.postprocess import PostProcessing

INPUT_NAME = "features"
PREFIX = "seld_edge."
FORMAT_VERSION = "2"
MAX_WINDOW_SECONDS = 600.0
"""Longest inference window a model file may declare: more is a damaged file, not a model."""


@dataclass(frozen=True)
class ModelInput:
    """One graph input: its name and the features it takes (which say the recording they come from)."""

    name: str
    feature_config: FeatureConfig

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "feature_config": json.loads(self.feature_config.to_json())}

    @classmethod
    def from_dict(cls, data: Any) -> "ModelInput":
        if not isinstance(data, dict) or set(data) != {"name", "feature_config"} or not isinstance(data["name"], str):
            raise ValueError("each input needs a name and a feature_config")
        return cls(data["name"], FeatureConfig.from_json(json.dumps(data["feature_config"])))


@dataclass(frozen=True)
class ModelMetadata:
    model: str
    model_args: dict[str, Any]
    inputs: tuple[ModelInput, ...]
    class_names: tuple[str, ...]
    output_format: str
    format_options: dict[str, Any]
    output_names: tuple[str, ...]
    label_rate_hz: float  # output frames per second (the DCASE grid is 10 Hz; see formats.label_rate)
    window_labels: int  # output frames per inference window (the training chunk)
    postprocess: PostProcessing
    checkpoint_sha256: str
    package_version: str

    def __post_init__(self) -> None:
        """Every field's type and range; raises ValueError naming the field (from_props adds the file)."""
        if not self.inputs:
            raise ValueError("inputs: a model takes at least one input")
        if len({i.name for i in self.inputs}) != len(self.inputs):
            raise ValueError("inputs: input names repeat")
        if not self.class_names or not all(isinstance(c, str) for c in self.class_names):
            raise ValueError("class_names: a non-empty list of names")
        if not math.isfinite(self.label_rate_hz) or self.label_rate_hz <= 0:
            raise ValueError(f"label_rate_hz: a positive number, got {self.label_rate_hz}")
        rate_ratio(self.label_rate_hz)
        if not 1 <= self.window_labels <= MAX_WINDOW_SECONDS * self.label_rate_hz:
            raise ValueError(f"window_labels: 1 to {MAX_WINDOW_SECONDS:g} s of frames, got {self.window_labels}")
        for model_input in self.inputs:
            model_input.feature_config.frames_per_label(self.label_rate_hz)
        fmt = self.format
        if tuple(self.output_names) != fmt.outputs:
            raise ValueError(f"output_names: the {fmt.name} format's outputs are {list(fmt.outputs)}")
        try:
            class_thresholds(self.postprocess.thresholds, self.num_classes)
        except SeldEdgeError as err:
            raise ValueError(f"postprocess: {err}") from None

    @property
    def format(self) -> OutputFormat:
        return get_output_format(self.output_format, **self.format_options)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def feature_config(self) -> FeatureConfig:
        """The features of a single-input model; a composite has one per input (:attr:`inputs`)."""
        if len(self.inputs) != 1:
            names = ", ".join(f"{i.name} ({i.feature_config.audio_format})" for i in self.inputs)
            raise SeldEdgeError(f"{self.model} takes several inputs ({names}); this needs a single-input model")
        return self.inputs[0].feature_config

    def frames_per_label(self, model_input: ModelInput) -> int:
        return model_input.feature_config.frames_per_label(self.label_rate_hz)

    def window_frames(self, model_input: ModelInput) -> int:
        return self.window_labels * self.frames_per_label(model_input)

    def to_props(self) -> dict[str, str]:
        """String key/values for ONNX metadata_props (all values are strings there)."""
        props = {"format_version": FORMAT_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, PostProcessing):
                props[f.name] = value.to_json()
            elif f.name == "inputs":
                props[f.name] = json.dumps([i.to_dict() for i in value])
            elif isinstance(value, str):
                props[f.name] = value
            else:
                props[f.name] = json.dumps(value)
        return {PREFIX + k: v for k, v in props.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str) -> "ModelMetadata":
        """Parse metadata_props; a model without (valid) seld-edge metadata is a clear user error."""
        ours = {k[len(PREFIX) :]: v for k, v in props.items() if k.startswith(PREFIX)}
        if not ours:
            raise SeldEdgeError(f"{source}: no seld-edge metadata (export it with `seld-edge export`)")
        if ours.get("format_version") != FORMAT_VERSION:
            raise SeldEdgeError(
                f"{source}: seld-edge metadata version {ours.get('format_version')!r}, expected {FORMAT_VERSION} "
                "(re-export the model with this version of seld-edge)"
            )
        missing = [f.name for f in fields(cls) if f.name not in ours]
        if missing:
            raise SeldEdgeError(f"{source}: seld-edge metadata lacks {', '.join(missing)}")
        parsed = {}
        for f in fields(cls):
            try:
                parsed[f.name] = _PARSERS[f.name](ours[f.name])
            except (ValueError, TypeError, KeyError, SeldEdgeError) as err:
                raise SeldEdgeError(f"{source}: metadata field {f.name!r} is malformed ({err})") from None
        try:
            return cls(**parsed)
        except (ValueError, SeldEdgeError) as err:
            raise SeldEdgeError(f"{source}: invalid seld-edge metadata ({err})") from None


def _json_of(kind: type, what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = json.loads(text)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise TypeError(f"expected {what}")
        return value

    return parse


def _string(text: str) -> str:
    return text


_PARSERS: dict[str, Callable[[str], Any]] = {
    "model": _string,
    "model_args": _json_of(dict, "a JSON object"),
    "inputs": lambda text: tuple(ModelInput.from_dict(d) for d in _json_of(list, "a JSON list")(text)),
    "class_names": lambda text: tuple(_json_of(list, "a JSON list of names")(text)),
    "output_format": _string,
    "format_options": _json_of(dict, "a JSON object"),
    "output_names": lambda text: tuple(_json_of(list, "a JSON list of names")(text)),
    "label_rate_hz": lambda text: float(_json_of((int, float), "a number")(text)),
    "window_labels": _json_of(int, "an integer"),
    "postprocess": PostProcessing.from_json,
    "checkpoint_sha256": _string,
    "package_version": _string,
}


OUTPUT_NEUTRAL_FIELDS = ("checkpoint_sha256", "package_version")
"""Fields that say where a model came from, not what it computes."""


def metadata_differences(ours: ModelMetadata, theirs: ModelMetadata) -> list[tuple[str, Any, Any]]:
    """(field, our value, their value) for every field where two models' metadata differ in a way that
    changes outputs: every field but those of OUTPUT_NEUTRAL_FIELDS, an input's feature config field by
    field (``inputs[features].hop_length``)."""
    differences = []
    for f in fields(ModelMetadata):
        a, b = getattr(ours, f.name), getattr(theirs, f.name)
        if f.name in OUTPUT_NEUTRAL_FIELDS or a == b:
            continue
        if f.name == "inputs" and [i.name for i in a] == [i.name for i in b]:
            for mine, other in zip(a, b, strict=True):
                for key in (g.name for g in fields(FeatureConfig)):
                    x, y = getattr(mine.feature_config, key), getattr(other.feature_config, key)
                    if x != y:
                        differences.append((f"inputs[{mine.name}].{key}", x, y))
        else:
            differences.append((f.name, a, b))
    return differences

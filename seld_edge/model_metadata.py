"""The metadata every exported model carries (ONNX metadata_props, or a JSON sidecar of an engine).

Written by the exporter, read by the torch-free runtime: with it, `seld-edge run MODEL` needs nothing
but the model file. Keys are prefixed ``seld_edge.`` so they never collide with other tools' props.
The graph's input is named :data:`INPUT_NAME`, (batch, channels, frames, bins) float32 raw features
(the normaliser is inside the graph); its outputs carry the output format's names.
"""

import json
from dataclasses import dataclass, fields
from typing import Any

from seld_edge.errors import SeldEdgeError
from seld_edge.features import FeatureConfig
from seld_edge.postprocess import PostProcessing

INPUT_NAME = "features"
PREFIX = "seld_edge."
FORMAT_VERSION = "1"


@dataclass(frozen=True)
class ModelMetadata:
    model: str
    model_args: dict[str, Any]
    feature_config: FeatureConfig
    class_names: tuple[str, ...]
    output_format: str
    output_names: tuple[str, ...]
    label_rate_hz: float
    window_frames: int  # feature frames per inference window (the training chunk)
    postprocess: PostProcessing
    checkpoint_sha256: str
    package_version: str

    @property
    def frames_per_label(self) -> int:
        return self.feature_config.frames_per_label(self.label_rate_hz)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_props(self) -> dict[str, str]:
        """String key/values for ONNX metadata_props (all values are strings there)."""
        props = {"format_version": FORMAT_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, FeatureConfig | PostProcessing):
                props[f.name] = value.to_json()
            elif isinstance(value, str):
                props[f.name] = value
            else:
                props[f.name] = json.dumps(value)
        return {PREFIX + k: v for k, v in props.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: str) -> "ModelMetadata":
        """Parse metadata_props; a model without seld-edge metadata is a clear user error."""
        ours = {k[len(PREFIX) :]: v for k, v in props.items() if k.startswith(PREFIX)}
        if not ours:
            raise SeldEdgeError(f"{source}: no seld-edge metadata (export it with `seld-edge export`)")
        if ours.get("format_version") != FORMAT_VERSION:
            raise SeldEdgeError(f"{source}: seld-edge metadata version {ours.get('format_version')!r}, expected 1")
        missing = [f.name for f in fields(cls) if f.name not in ours]
        if missing:
            raise SeldEdgeError(f"{source}: seld-edge metadata lacks {', '.join(missing)}")
        try:
            return cls(
                model=ours["model"],
                model_args=json.loads(ours["model_args"]),
                feature_config=FeatureConfig.from_json(ours["feature_config"]),
                class_names=tuple(json.loads(ours["class_names"])),
                output_format=ours["output_format"],
                output_names=tuple(json.loads(ours["output_names"])),
                label_rate_hz=float(json.loads(ours["label_rate_hz"])),
                window_frames=int(json.loads(ours["window_frames"])),
                postprocess=PostProcessing.from_json(ours["postprocess"]),
                checkpoint_sha256=ours["checkpoint_sha256"],
                package_version=ours["package_version"],
            )
        except (ValueError, TypeError, KeyError) as err:
            raise SeldEdgeError(f"{source}: malformed seld-edge metadata ({err})") from None

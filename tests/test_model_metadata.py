"""The exported-model metadata contract: round trip and clear errors."""

import pytest

from seld_edge.errors import SeldEdgeError
from seld_edge.features import feature_config
from seld_edge.model_metadata import ModelMetadata
from seld_edge.postprocess import PostProcessing

META = ModelMetadata(
    "seldnet", {"rnn_size": 64}, feature_config("foa_logmel_iv"), ("a", "b"), "multi_accdoa", ("accdoa",), 10.0, 250,
    PostProcessing(thresholds=(0.4, 0.6)), "ab" * 32, "0.1.0",
)  # fmt: skip


def test_round_trip_through_string_props():
    props = META.to_props()
    assert all(isinstance(v, str) and k.startswith("seld_edge.") for k, v in props.items())
    assert ModelMetadata.from_props({**props, "other.tool": "x"}, "m.onnx") == META
    assert META.frames_per_label == 5 and META.num_classes == 2


def test_missing_or_malformed_metadata_is_a_clear_error():
    with pytest.raises(SeldEdgeError, match=r"m\.onnx: no seld-edge metadata"):
        ModelMetadata.from_props({"producer": "x"}, "m.onnx")
    props = META.to_props()
    del props["seld_edge.class_names"]
    with pytest.raises(SeldEdgeError, match="lacks class_names"):
        ModelMetadata.from_props(props, "m.onnx")
    with pytest.raises(SeldEdgeError, match="malformed"):
        ModelMetadata.from_props({**META.to_props(), "seld_edge.window_frames": "many"}, "m.onnx")

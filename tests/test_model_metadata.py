"""The exported-model metadata contract: round trip, several inputs, and one clear line for every
malformed or hostile field."""

import json

import pytest

from seld_edge.errors import SeldEdgeError
from seld_edge.features import feature_config
from seld_edge.model_metadata import ModelInput, ModelMetadata
from seld_edge.postprocess import PostProcessing

META = ModelMetadata(
    model="seldnet",
    model_args={"rnn_size": 64},
    inputs=(ModelInput("features", feature_config("foa_logmel_iv")),),
    class_names=("a", "b"),
    output_format="multi_accdoa",
    format_options={"with_distance": False},
    output_names=("accdoa",),
    label_rate_hz=10.0,
    window_labels=50,
    postprocess=PostProcessing(thresholds=(0.4, 0.6)),
    checkpoint_sha256="ab" * 32,
    package_version="0.1.0",
)


def test_round_trip_through_string_props():
    props = META.to_props()
    assert all(isinstance(v, str) and k.startswith("seld_edge.") for k, v in props.items())
    assert ModelMetadata.from_props({**props, "other.tool": "x"}, "m.onnx") == META
    (model_input,) = META.inputs
    assert META.frames_per_label(model_input) == 5 and META.window_frames(model_input) == 250
    assert META.num_classes == 2 and META.feature_config.kind == "foa_logmel_iv"
    assert META.format.name == "multi_accdoa"


def test_a_composite_has_one_input_per_recording():
    from dataclasses import replace

    meta = replace(
        META,
        inputs=(
            ModelInput("features_sed", feature_config("stereo_logmel")),
            ModelInput("features_doa", feature_config("foa_logmel_iv_128")),
        ),
        output_format="sed_doa", format_options={}, output_names=("sed", "doa"),
    )  # fmt: skip
    assert ModelMetadata.from_props(meta.to_props(), "m.onnx") == meta
    assert [meta.window_frames(i) for i in meta.inputs] == [250, 400]
    with pytest.raises(SeldEdgeError, match=r"several inputs \(features_sed \(stereo\), features_doa \(foa\)\)"):
        _ = meta.feature_config


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("window_labels", "many", "field 'window_labels' is malformed"),
        ("window_labels", "10000000", "window_labels: 1 to 600 s of frames"),
        ("window_labels", "0", "window_labels: 1 to 600 s"),
        ("label_rate_hz", "0", "label_rate_hz: a positive number"),
        ("label_rate_hz", "3", "neither a whole divisor nor a whole multiple"),
        ("label_rate_hz", "true", "field 'label_rate_hz' is malformed"),
        ("inputs", "[]", "inputs: a model takes at least one input"),
        ("inputs", '[{"name": "features"}]', "each input needs a name and a feature_config"),
        ("output_names", '["sed", "doa"]', "output_names: the multi_accdoa format's outputs are"),
        ("output_format", "multi-accdoa", "did you mean multi_accdoa"),
        ("format_options", '{"with_distanse": true}', "did you mean with_distance"),
        ("class_names", "[]", "class_names: a non-empty list"),
        ("model_args", "[1]", "field 'model_args' is malformed"),
        ("postprocess", "{}", "field 'postprocess' is malformed"),
        # thresholds tuned for another class list named no file: the decoder found them, mid-run
        (
            "postprocess",
            '{"type": "PostProcessing", "thresholds": [0.5, 0.5, 0.5]}',
            "postprocess: got 3 per-class thresholds for 2 classes",
        ),
    ],
)
def test_every_field_is_checked_with_its_name(field, value, message):
    with pytest.raises(SeldEdgeError, match=message) as info:
        ModelMetadata.from_props({**META.to_props(), f"seld_edge.{field}": value}, "m.onnx")
    assert str(info.value).startswith("m.onnx: ") and "\n" not in str(info.value)


def test_missing_old_or_foreign_metadata_is_a_clear_error():
    with pytest.raises(SeldEdgeError, match=r"m\.onnx: no seld-edge metadata"):
        ModelMetadata.from_props({"producer": "x"}, "m.onnx")
    props = META.to_props()
    del props["seld_edge.class_names"]
    with pytest.raises(SeldEdgeError, match="lacks class_names"):
        ModelMetadata.from_props(props, "m.onnx")
    with pytest.raises(SeldEdgeError, match=r"version '1', expected 2 \(re-export"):
        ModelMetadata.from_props({**META.to_props(), "seld_edge.format_version": "1"}, "m.onnx")
    config = json.loads(META.to_props()["seld_edge.inputs"])
    config[0]["feature_config"]["hop_length"] = 470  # does not divide the 10 Hz label rate
    with pytest.raises(SeldEdgeError, match="does not divide"):
        ModelMetadata.from_props({**META.to_props(), "seld_edge.inputs": json.dumps(config)}, "m.onnx")


def test_differences_that_change_outputs_are_named_field_by_field():
    from dataclasses import replace

    from seld_edge.model_metadata import metadata_differences

    assert metadata_differences(META, replace(META, package_version="9.9", checkpoint_sha256="cd" * 32)) == []
    hop = replace(META, inputs=(ModelInput("features", feature_config("foa_logmel_iv", hop_length=240)),))
    assert metadata_differences(hop, META) == [("inputs[features].hop_length", 240, 480)]
    other = replace(META, window_labels=60, postprocess=PostProcessing(thresholds=0.3), class_names=("a", "c"))
    fields = [field for field, _, _ in metadata_differences(META, other)]
    assert fields == ["class_names", "window_labels", "postprocess"]

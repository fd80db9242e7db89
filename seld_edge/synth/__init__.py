"""Synthetic SELD scenes in the STARSS23 layout: what the tests, the demo and CI train on.

Thirteen distinct synthetic sound types (one per STARSS23 class) are placed as static or moving
sources in a shoebox room, recorded in first-order Ambisonics and/or by the tetrahedral microphone
array (:mod:`seld_edge.synth.mic_array`) with optional early reflections and a diffuse background,
and labelled every 100 ms (see :mod:`seld_edge.synth.scene`).
"""

from seld_edge.synth.dataset import generate_dataset, stereo_labels
from seld_edge.synth.scene import (
    AUDIO_FORMATS,
    LABEL_HOP_S,
    SAMPLE_RATE,
    SceneEvent,
    generate_scene,
    generate_scene_formats,
    label_events,
    place_events,
    render_scene,
    render_scene_formats,
    scene_audio,
)
from seld_edge.synth.spatial import Room, sample_room

__all__ = [
    "AUDIO_FORMATS",
    "LABEL_HOP_S",
    "SAMPLE_RATE",
    "Room",
    "SceneEvent",
    "generate_dataset",
    "generate_scene",
    "generate_scene_formats",
    "label_events",
    "place_events",
    "render_scene",
    "render_scene_formats",
    "sample_room",
    "scene_audio",
    "stereo_labels",
]

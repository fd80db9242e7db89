"""Synthetic SELD scenes in the STARSS23 layout: what the tests, the demo and CI train on.

Thirteen distinct synthetic sound types (one per STARSS23 class) are placed as static or moving
sources in a shoebox room, encoded to first-order Ambisonics with optional early reflections and a
diffuse background, and labelled every 100 ms (see :mod:`seld_edge.synth.scene`).
"""

from seld_edge.synth.dataset import generate_dataset, stereo_labels
from seld_edge.synth.scene import (
    LABEL_HOP_S,
    SAMPLE_RATE,
    SceneEvent,
    generate_scene,
    label_events,
    place_events,
    render_scene,
    scene_audio,
)
from seld_edge.synth.spatial import Room, sample_room

__all__ = [
    "LABEL_HOP_S",
    "SAMPLE_RATE",
    "Room",
    "SceneEvent",
    "generate_dataset",
    "generate_scene",
    "label_events",
    "place_events",
    "render_scene",
    "sample_room",
    "scene_audio",
    "stereo_labels",
]

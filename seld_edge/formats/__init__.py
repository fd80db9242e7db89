"""Torch-free data formats: DCASE CSVs, data set layout, class lists and label encodings."""

from seld_edge.formats.classes import NUM_CLASSES, STARSS23_CLASSES
from seld_edge.formats.dataset import Clip, find_clips, find_csvs
from seld_edge.formats.dcase_csv import Event, format_events, read_events, write_events

__all__ = [
    "NUM_CLASSES",
    "STARSS23_CLASSES",
    "Clip",
    "Event",
    "find_clips",
    "find_csvs",
    "format_events",
    "read_events",
    "write_events",
]

"""Torch-free data formats: DCASE CSVs, data set layout, class lists and the model output formats."""

from seld_edge.formats import accdoa, sed_doa, trackwise  # noqa: F401  (register the output formats)
from seld_edge.formats.classes import NUM_CLASSES, STARSS23_CLASSES
from seld_edge.formats.dataset import Clip, find_clips, find_csvs
from seld_edge.formats.dcase_csv import Event, format_events, read_events, write_events
from seld_edge.formats.output_format import OUTPUT_FORMATS, LossView, OutputFormat, get_output_format

__all__ = [
    "NUM_CLASSES",
    "OUTPUT_FORMATS",
    "STARSS23_CLASSES",
    "Clip",
    "Event",
    "LossView",
    "OutputFormat",
    "find_clips",
    "find_csvs",
    "format_events",
    "get_output_format",
    "read_events",
    "write_events",
]

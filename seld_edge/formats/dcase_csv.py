"""DCASE task 3 metadata and prediction CSVs: one :class:`Event` per row.

Reading follows the official 2023/2024 loaders, which decide the form by the column count
(docs/data.md): 5 = frame,class,source,azimuth,elevation; 6 = the same plus distance;
7 = frame,class,source,x,y,z,distance (Cartesian). A file whose first row is a header is the DCASE
2025 stereo form `frame,class,source,azimuth,distance,onscreen`.

Internally azimuth and elevation are degrees and distance is metres. Reference metadata stores
distance in centimetres (``reference=True`` converts it); predictions store metres, except the 2025
form, which keeps centimetres on both sides. References are polar: a 7-column (Cartesian) row in a
reference file is a prediction put in the wrong folder, and is refused rather than read (a viewer that
compares any two files may allow it).

Writing: FOA predictions always use the 7-column Cartesian form (distance 0 when the model estimates
none), because a 6-column Cartesian file is silently read as polar by the official code.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seld_edge.errors import SeldEdgeError
from seld_edge.geometry import polar_to_unit, unit_to_polar
from seld_edge.io import OutputSet, atomic_write_text

STEREO_HEADER = ("frame", "class", "source", "azimuth", "distance", "onscreen")
CSV_FORMS = ("cartesian", "polar", "dcase2025")


@dataclass(frozen=True)
class Event:
    """One row of a DCASE CSV: an active source in one 100 ms label frame."""

    frame: int
    class_index: int
    source: int
    azimuth: float
    elevation: float = 0.0
    distance: float | None = None  # metres
    onscreen: int | None = None

    def unit_vector(self) -> np.ndarray:
        return polar_to_unit(self.azimuth, self.elevation)

    # dataclasses.replace, spelled out: it looks the fields up on every call and costs 4x as much, and
    # training moves every event of every chunk it draws (a third of glfer_net_tiny's data time went there).
    def at_frame(self, frame: int) -> "Event":
        """The same event in another label frame."""
        return Event(frame, self.class_index, self.source, self.azimuth, self.elevation, self.distance, self.onscreen)

    def with_direction(self, azimuth: float, elevation: float) -> "Event":
        """The same event from another direction (degrees)."""
        return Event(self.frame, self.class_index, self.source, azimuth, elevation, self.distance, self.onscreen)


def read_events(
    path: str | Path, reference: bool = False, num_classes: int | None = None, *, cartesian_reference: bool = False
) -> list[Event]:
    """Read a DCASE CSV; raises SeldEdgeError naming the file and line on a malformed row.

    A reference (``reference=True``: data set metadata, distances in cm) in the 7-column Cartesian form
    is refused, unless cartesian_reference (a viewer comparing any two files): it is a prediction in the
    reference folder, and scoring it would score the wrong file.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise SeldEdgeError(f"{path}: cannot read metadata ({err})") from None
    lines = [line.strip() for line in text.splitlines()]
    events: list[Event] = []
    stereo = False
    for line_no, line in enumerate(lines, start=1):
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")]
        if line_no == 1 and fields and fields[0].lower() == "frame":
            if tuple(f.lower() for f in fields) != STEREO_HEADER:
                raise SeldEdgeError(f"{path}:1: unknown header {line!r}")
            stereo = True
            continue
        try:
            events.append(_parse_row(fields, stereo, reference, cartesian_reference))
        except ValueError as err:
            raise SeldEdgeError(f"{path}:{line_no}: malformed row {line!r} ({err})") from None
        event = events[-1]
        if event.frame < 0 or event.class_index < 0:
            raise SeldEdgeError(f"{path}:{line_no}: negative frame or class in {line!r}")
        if num_classes is not None and event.class_index >= num_classes:
            raise SeldEdgeError(
                f"{path}:{line_no}: class {event.class_index} out of range (the model has {num_classes} classes)"
            )
    return events


def _parse_row(fields: Sequence[str], stereo: bool, reference: bool, cartesian_reference: bool) -> Event:
    if not all(fields):
        raise ValueError("empty field")
    frame, class_index, source = int(fields[0]), int(fields[1]), int(fields[2])
    values = [float(f) for f in fields[3:]]
    if not np.all(np.isfinite(values)):
        raise ValueError("non-finite value")
    if stereo:
        if len(fields) != 6:
            raise ValueError(f"expected 6 columns, got {len(fields)}")
        azimuth, distance_cm, onscreen = values
        return Event(frame, class_index, source, azimuth, 0.0, distance_cm / 100.0, int(onscreen))
    if len(fields) == 5:
        return Event(frame, class_index, source, values[0], values[1])
    if len(fields) == 6:
        scale = 0.01 if reference else 1.0
        return Event(frame, class_index, source, values[0], values[1], values[2] * scale)
    if len(fields) == 7:
        if reference and not cartesian_reference:
            raise ValueError("7 columns is the Cartesian prediction form; reference metadata is polar (5 or 6 columns)")
        x, y, z, distance = values
        if x == 0.0 and y == 0.0 and z == 0.0:
            raise ValueError("zero direction vector")
        azimuth, elevation = unit_to_polar(np.array([x, y, z]))
        return Event(frame, class_index, source, float(azimuth), float(elevation), distance)
    raise ValueError(f"expected 5, 6 or 7 columns, got {len(fields)}")


def format_events(events: Iterable[Event], form: str = "cartesian") -> str:
    """CSV text for events in one of CSV_FORMS (see the module docstring)."""
    return csv_header(form) + format_rows(sorted(events, key=lambda e: (e.frame, e.class_index, e.source)), form)


def csv_header(form: str) -> str:
    """The first line of a CSV in this form ("" for the forms without a header)."""
    if form not in CSV_FORMS:
        raise ValueError(f"unknown CSV form {form!r}; expected one of {CSV_FORMS}")
    return ",".join(STEREO_HEADER) + "\n" if form == "dcase2025" else ""


def format_rows(events: Iterable[Event], form: str = "cartesian") -> str:
    """The rows of events in their order, each ending in a newline: a CSV written piece by piece (a long
    recording's events as they are decoded) is csv_header, then the rows of each piece."""
    rows: list[str] = []
    for e in events:
        head = f"{e.frame},{e.class_index},{e.source}"
        if form == "cartesian":
            x, y, z = e.unit_vector()
            rows.append(f"{head},{x:.4f},{y:.4f},{z:.4f},{(e.distance or 0.0):.4f}\n")
        elif form == "polar":
            tail = "" if e.distance is None else f",{e.distance * 100.0:.0f}"
            rows.append(f"{head},{e.azimuth:.0f},{e.elevation:.0f}{tail}\n")
        elif form == "dcase2025":
            distance_cm = (e.distance or 0.0) * 100.0
            rows.append(f"{head},{e.azimuth:.0f},{distance_cm:.0f},{e.onscreen or 0}\n")
        else:
            raise ValueError(f"unknown CSV form {form!r}; expected one of {CSV_FORMS}")
    return "".join(rows)


def write_events(
    path: str | Path, events: Iterable[Event], form: str = "cartesian", outputs: OutputSet | None = None
) -> None:
    """Write events atomically (a failed write leaves no partial file), or into a set of outputs."""
    text = format_events(events, form)
    if outputs is None:
        atomic_write_text(path, text)
    else:
        outputs.write_text(path, text)

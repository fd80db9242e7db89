"""The floating-point weights inside an ONNX file, read without the ``onnx`` package.

The runtime installs onnxruntime alone, which runs a graph but shows none of its weights, so a model
whose weights are NaN (a diverged training run exported anyway, a damaged file) would run and give no
events without a word. This reads them from the file itself, a protocol buffer (onnx.proto3), of which
it needs only the wire format (varint keys; lengths before strings, bytes and messages) and a few field
numbers:

    ModelProto      7: graph (GraphProto)
    GraphProto      1: node (NodeProto)   5: initializer (TensorProto)
    NodeProto       5: attribute (AttributeProto)
    AttributeProto  5: t (TensorProto)    6: g (GraphProto)   10: tensors   11: graphs (bodies of Loop, Scan, If)
    TensorProto     2: data_type   4: float_data   5: int32_data (float16, bfloat16)   8: name   9: raw_data
                    10: double_data   14: data_location (1: external, not in this file)

Tensors stored outside the file (data_location external) are not read: seld-edge exports one file.
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np

FLOAT, FLOAT16, DOUBLE, BFLOAT16 = 1, 10, 11, 16
_RAW_DTYPES = {FLOAT: "<f4", FLOAT16: "<f2", DOUBLE: "<f8", BFLOAT16: "<u2"}
_EXTERNAL = 1


def float_weights(path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, values) of every floating-point tensor stored in the ONNX file: initialisers and the tensors
    of node attributes (Constant nodes), subgraphs included. ValueError on a file that is no protocol buffer."""
    data = memoryview(Path(path).read_bytes())
    for field, value in _fields(data):
        if field == 7 and isinstance(value, memoryview):
            yield from _graph(value)


def first_non_finite(path: str | Path) -> str | None:
    """The name of the first floating-point tensor of the file holding NaN or an infinity, or None."""
    for name, values in float_weights(path):
        if not np.isfinite(values).all():
            return name
    return None


def _graph(message: memoryview) -> Iterator[tuple[str, np.ndarray]]:
    for field, value in _fields(message):
        if field == 5 and isinstance(value, memoryview):
            yield from _tensor(value)
        elif field == 1 and isinstance(value, memoryview):
            for attribute_field, attribute in _fields(value):
                if attribute_field == 5 and isinstance(attribute, memoryview):
                    yield from _attribute(attribute)


def _attribute(message: memoryview) -> Iterator[tuple[str, np.ndarray]]:
    for field, value in _fields(message):
        if field in (5, 10) and isinstance(value, memoryview):
            yield from _tensor(value)
        elif field in (6, 11) and isinstance(value, memoryview):
            yield from _graph(value)


def _tensor(message: memoryview) -> Iterator[tuple[str, np.ndarray]]:
    """The tensor's values when it holds floating-point numbers in this file."""
    data_type, name, location = 0, "", 0
    raw: memoryview | None = None
    packed: list[tuple[int, memoryview | int]] = []
    for field, value in _fields(message):
        if field == 2 and isinstance(value, int):
            data_type = value
        elif field == 8 and isinstance(value, memoryview):
            name = bytes(value).decode("utf-8", "replace")
        elif field == 9 and isinstance(value, memoryview):
            raw = value
        elif field == 14 and isinstance(value, int):
            location = value
        elif field in (4, 5, 10):
            packed.append((field, value))
    if data_type not in _RAW_DTYPES or location == _EXTERNAL:
        return
    if raw is not None:
        values = np.frombuffer(raw, dtype=_RAW_DTYPES[data_type])
    elif data_type == FLOAT:
        values = _numbers(packed, 4, "<f4")
    elif data_type == DOUBLE:
        values = _numbers(packed, 10, "<f8")
    else:  # float16 and bfloat16 bits, one per int32_data varint
        values = np.array([v for f, value in packed if f == 5 for v in _varints(value)], np.uint16)
        values = values.view("<f2") if data_type == FLOAT16 else values
    if data_type == BFLOAT16:
        values = (values.astype(np.uint32) << 16).view(np.float32)
    yield name, values


def _numbers(packed: list[tuple[int, memoryview | int]], field: int, dtype: str) -> np.ndarray:
    """A repeated float or double field: packed (one length-delimited run) or one fixed-size value per key."""
    parts = [np.frombuffer(value, dtype=dtype) for f, value in packed if f == field and isinstance(value, memoryview)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _varints(value: memoryview | int) -> list[int]:
    if isinstance(value, int):
        return [value]
    out, position = [], 0
    while position < len(value):
        number, position = _varint(value, position)
        out.append(number)
    return out


def _fields(message: memoryview) -> Iterator[tuple[int, memoryview | int]]:
    """(field number, value) of each field of a message: an int for varints, bytes (a view) otherwise."""
    position, end = 0, len(message)
    while position < end:
        key, position = _varint(message, position)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(message, position)
            yield field, value
            continue
        if wire == 2:
            size, position = _varint(message, position)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise ValueError(f"unknown protocol buffer wire type {wire}")
        if position + size > end:
            raise ValueError("the file ends inside a field")
        yield field, message[position : position + size]
        position += size


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("malformed varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7

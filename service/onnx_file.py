"""Facts about an ONNX file read without the ``onnx`` package (not a serving dependency).

Read from the ModelProto's wire format, so that a folder of files can be looked through
without creating an onnxruntime session for each: field 8 (``opset_import``) holds
OperatorSetIdProto messages with ``domain`` (field 1, empty for the default ONNX domain)
and ``version`` (field 2); field 14 (``metadata_props``) holds StringStringEntryProto
messages with ``key`` (field 1) and ``value`` (field 2).
"""

from __future__ import annotations

from pathlib import Path

_OPSET_IMPORT_FIELD = 8
_METADATA_PROPS_FIELD = 14


class NotAnOnnxFile(ValueError):
    """The bytes are not a protobuf message (a truncated, corrupt or foreign file)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, bytes | int]]:
    """Top-level (field number, wire type, value) triples of one protobuf message."""
    out: list[tuple[int, int, bytes | int]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, wire, value))
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated length-delimited field")
            out.append((number, wire, buf[pos : pos + length]))
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def read_metadata(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX model file (empty if it has none).

    Raises NotAnOnnxFile when the file is not a well-formed protobuf message.
    """
    try:
        fields = _fields(Path(path).read_bytes())
        meta: dict[str, str] = {}
        for number, wire, value in fields:
            if number == _METADATA_PROPS_FIELD and wire == 2 and isinstance(value, bytes):
                entry = {n: v for n, _, v in _fields(value)}
                key, val = entry.get(1, b""), entry.get(2, b"")
                if isinstance(key, bytes) and isinstance(val, bytes):
                    meta[key.decode("utf-8", "replace")] = val.decode("utf-8", "replace")
    except (ValueError, IndexError) as exc:
        raise NotAnOnnxFile(f"{path} is not a valid ONNX file ({exc})") from None
    return meta


def read_opset(path: Path) -> int | None:
    """The default-domain opset version of an ONNX model file, or None if absent.

    Raises NotAnOnnxFile when the file is not a well-formed protobuf message."""
    try:
        for number, wire, value in _fields(Path(path).read_bytes()):
            if number != _OPSET_IMPORT_FIELD or wire != 2 or not isinstance(value, bytes):
                continue
            sub = {n: v for n, _, v in _fields(value)}
            if sub.get(1, b"") in (b"", b"ai.onnx") and isinstance(sub.get(2), int):
                return int(sub[2])
    except (ValueError, IndexError) as exc:
        raise NotAnOnnxFile(f"{path} is not a valid ONNX file ({exc})") from None
    return None

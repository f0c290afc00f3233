"""Facts about an ONNX file read without the ``onnx`` package (not a serving dependency).

onnxruntime exposes the custom metadata but not the opset, so the opset is read from the
ModelProto's wire format: field 8 (``opset_import``) holds OperatorSetIdProto messages
with ``domain`` (field 1, empty for the default ONNX domain) and ``version`` (field 2).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_OPSET_IMPORT_FIELD = 8


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
            out.append((number, wire, buf[pos : pos + length]))
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def read_opset(path: Path) -> int | None:
    """The default-domain opset version of an ONNX model file, or None if absent."""
    for number, wire, value in _fields(Path(path).read_bytes()):
        if number != _OPSET_IMPORT_FIELD or wire != 2:
            continue
        assert isinstance(value, bytes)
        sub = {n: v for n, _, v in _fields(value)}
        if sub.get(1, b"") in (b"", b"ai.onnx") and isinstance(sub.get(2), int):
            return int(sub[2])
    return None

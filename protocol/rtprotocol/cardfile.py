"""Character card files: a card's JSON, or a PNG card whose card is base64 UTF-8 JSON in a ``tEXt`` chunk named
``chara`` (Character Card V2) or ``ccv3`` (V3, preferred when both are there). Shared by the server and the clients
(``rtclient`` opens a session with a card file), with no dependency beyond the standard library."""

from __future__ import annotations

import base64
import binascii
import json
import struct
import zlib
from pathlib import Path
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class CardError(ValueError):
    """The card cannot be read; the message says which field or what of the file."""


def read_card_bytes(data: bytes) -> dict[str, Any]:
    """The card map in a file's bytes: a PNG card's ``ccv3`` or ``chara`` text chunk, or JSON."""
    if data.startswith(PNG_SIGNATURE):
        chunks = png_text_chunks(data)
        text = chunks.get("ccv3") or chunks.get("chara")
        if text is None:
            raise CardError("the PNG has no chara or ccv3 text chunk: it is not a character card")
        try:
            decoded = base64.b64decode(text, validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise CardError(f"the PNG card's text chunk is not base64 UTF-8: {exc}") from None
        return _json(decoded)
    return _json(data.decode("utf-8", "replace"))


def read_card_file(path: str | Path) -> dict[str, Any]:
    return read_card_bytes(Path(path).read_bytes())


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardError(f"the card is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CardError("the card's JSON must be an object")
    return value


def png_text_chunks(data: bytes) -> dict[str, str]:
    """The ``tEXt`` chunks of a PNG (keyword -> Latin-1 text), checked by their CRCs."""
    out: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(body) < length or len(crc) < 4:
            raise CardError("the PNG is cut short")
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            raise CardError(f"the PNG's {kind.decode('latin-1')} chunk is damaged (CRC mismatch)")
        if kind == b"tEXt" and b"\0" in body:
            key, _, text = body.partition(b"\0")
            out[key.decode("latin-1")] = text.decode("latin-1")
        if kind == b"IEND":
            break
        pos += 12 + length
    return out


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def card_png(card: dict[str, Any], *, v3: dict[str, Any] | None = None) -> bytes:
    """A 1x1 PNG carrying the card in a ``chara`` chunk (and a V3 one in ``ccv3``): how card files are written."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\xff\xff")
    chunks = [png_chunk(b"IHDR", ihdr)]
    chunks.append(png_chunk(b"tEXt", b"chara\0" + base64.b64encode(json.dumps(card).encode())))
    if v3 is not None:
        chunks.append(png_chunk(b"tEXt", b"ccv3\0" + base64.b64encode(json.dumps(v3).encode())))
    chunks += [png_chunk(b"IDAT", pixels), png_chunk(b"IEND", b"")]
    return PNG_SIGNATURE + b"".join(chunks)

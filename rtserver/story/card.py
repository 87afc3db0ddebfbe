"""Character Card V2 (``chara_card_v2``, spec 2.0): reading a card from a frame, a JSON file or a PNG file.

A card is kept as the client sent it (the ``raw`` map), so unknown fields and ``extensions`` are never lost; the
fields a prompt needs are read from it into ``Card``. V3 cards (``chara_card_v3``) share V2's fields and are read
the same way (their assets and decorators are kept, not used); a V1 card (the fields at the top level) is read as
if it were the ``data`` of a V2 one. In a PNG card the card is base64 UTF-8 JSON in a ``tEXt`` chunk named ``chara``
(V2) or ``ccv3`` (V3, preferred when both are there).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .lorebook import Book, BookError, parse_book

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_FIELDS = (
    "name",
    "description",
    "personality",
    "scenario",
    "first_mes",
    "mes_example",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "creator",
    "character_version",
)


class CardError(ValueError):
    """The card cannot be read; the message says which field."""


@dataclass
class Card:
    name: str
    description: str = ""
    personality: str = ""
    scenario: str = ""
    first_mes: str = ""
    mes_example: str = ""
    creator_notes: str = ""  # for people reading the card: never sent to the model
    system_prompt: str = ""
    post_history_instructions: str = ""
    creator: str = ""
    character_version: str = ""
    alternate_greetings: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    book: Book | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # the card as given, unknown keys and extensions included

    @property
    def digest(self) -> str:
        """The card's version: a hash of its canonical JSON (the KV of its text is shared per version)."""
        return card_digest(self.raw)

    def summary(self) -> dict[str, Any]:
        """What ``session.state.card`` shows: the card's name, its own version and its digest."""
        return {"name": self.name, "version": self.character_version, "digest": self.digest}


def card_digest(raw: dict[str, Any]) -> str:
    canonical = json.dumps(raw, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.blake2b(canonical, digest_size=8).hexdigest()


def parse_card(raw: Any) -> Card:
    """A ``Card`` from a decoded card map (V2, V3 or V1); ``CardError`` names what is wrong."""
    if not isinstance(raw, dict):
        raise CardError("card must be a map (Character Card V2: {spec, spec_version, data})")
    spec = raw.get("spec")
    if spec in ("chara_card_v2", "chara_card_v3"):
        data = raw.get("data")
        if not isinstance(data, dict):
            raise CardError(f"card.data must be a map in a {spec} card")
    elif spec is None:
        data = raw  # V1: the fields at the top level
    else:
        raise CardError(f"card.spec {str(spec)[:40]!r} is not chara_card_v2 or chara_card_v3")
    values: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        value = data.get(name, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise CardError(f"card.data.{name} must be a string")
        values[name] = value
    if not values["name"].strip():
        raise CardError("card.data.name is required")
    for name in ("alternate_greetings", "tags"):
        items = data.get(name) or []
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise CardError(f"card.data.{name} must be an array of strings")
        values[name] = list(items)
    book = data.get("character_book")
    try:
        values["book"] = parse_book(book) if book else None
    except BookError as exc:
        raise CardError(str(exc)) from None
    return Card(**values, raw=raw)


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

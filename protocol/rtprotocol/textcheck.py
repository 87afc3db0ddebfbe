"""The check a client makes of a turn's text: ``turn.end`` carries ``xlen`` (UTF-8 bytes) and ``xcrc`` (CRC-32,
zlib/IEEE, unsigned) of all the turn's ``delta.x`` concatenated; a client computes the same over what it
assembled and compares (PROTOCOL.md §3, "Checking a reply").
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any


def text_check(text: str) -> tuple[int, int]:
    """``(xlen, xcrc)`` of ``text``: its UTF-8 length in bytes and the CRC-32 of those bytes."""
    data = text.encode("utf-8")
    return len(data), zlib.crc32(data)


class TextCheck:
    """The same, kept as pieces arrive: ``add`` each delta's ``x``; ``xlen`` and ``xcrc`` are always current."""

    __slots__ = ("xcrc", "xlen")

    def __init__(self) -> None:
        self.xlen = 0
        self.xcrc = 0

    def add(self, piece: str) -> None:
        data = piece.encode("utf-8")
        self.xlen += len(data)
        self.xcrc = zlib.crc32(data, self.xcrc)


def mismatch(text: str, end: Mapping[str, Any]) -> str | None:
    """What differs between ``text`` and the ``xlen``/``xcrc`` of a ``turn.end`` frame, or None when they agree
    or the frame carries neither (a server from before they existed)."""
    xlen, xcrc = text_check(text)
    if "xlen" in end and end["xlen"] != xlen:
        return f"the text is {xlen} UTF-8 bytes; turn.end says {end['xlen']}"
    if "xcrc" in end and end["xcrc"] != xcrc:
        return f"the text's CRC-32 is {xcrc}; turn.end says {end['xcrc']}"
    return None

"""Character Card V2 (``chara_card_v2``, spec 2.0): the fields of a card a frame carries (files are read by
``rtprotocol.cardfile``, which the clients share).

A card is kept as the client sent it (the ``raw`` map), so unknown fields and ``extensions`` are never lost; the
fields a prompt needs are read from it into ``Card``. V3 cards (``chara_card_v3``) share V2's fields and are read
the same way (their assets and decorators are kept, not used); a V1 card (the fields at the top level) is read as
if it were the ``data`` of a V2 one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from rtprotocol.cardfile import CardError, card_png, png_chunk, read_card_bytes, read_card_file

from .lorebook import Book, BookError, parse_book

__all__ = ["Card", "CardError", "card_png", "parse_card", "png_chunk", "read_card_bytes", "read_card_file"]
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

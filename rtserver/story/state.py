"""The story state a card session carries beside its history: the card, the player's name, the story variables
and the author's note. It persists with the session (``SessionData.story``) as the plain map ``to_dict`` gives.

``vars_at`` is where the variables' block sits in the prompt: after the turn that was the head when they last
changed (0: before the first turn). A turn whose variables did not change finds that block where the session's KV
already holds it (nothing to prefill); a change costs a prefill from the block's old place, the turns since then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .card import Card, parse_card

DEFAULT_USER = "User"
DEFAULT_NOTE_DEPTH = 4  # messages from the end, as SillyTavern's default


@dataclass
class Story:
    card_raw: dict[str, Any]
    user: str = DEFAULT_USER
    vars: dict[str, Any] = field(default_factory=dict)
    vars_at: int = 0
    note: str = ""
    note_depth: int = DEFAULT_NOTE_DEPTH

    @cached_property
    def card(self) -> Card:
        return parse_card(self.card_raw)

    def to_dict(self) -> dict[str, Any]:
        return {
            "card": self.card_raw,
            "user": self.user,
            "vars": self.vars,
            "vars_at": self.vars_at,
            "note": self.note,
            "note_depth": self.note_depth,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Story:
        return cls(
            d["card"],
            str(d.get("user") or DEFAULT_USER),
            dict(d.get("vars") or {}),
            int(d.get("vars_at") or 0),
            str(d.get("note") or ""),
            int(d.get("note_depth", DEFAULT_NOTE_DEPTH)),
        )

    def public(self) -> dict[str, Any]:
        """What ``session.state`` shows of it."""
        out: dict[str, Any] = {"card": self.card.summary(), "user": self.user, "vars": self.vars}
        if self.note:
            out["note"] = {"text": self.note, "depth": self.note_depth}
        return out

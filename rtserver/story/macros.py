"""Card macros: ``{{char}}`` and ``{{user}}`` (and the V1 spellings ``<BOT>`` and ``<USER>``), case-insensitive, and
``{{original}}`` in a card's system prompt and post-history instructions (what the server would have used without
the card). Other ``{{...}}`` text is left as it is."""

from __future__ import annotations

import re

_MACRO = re.compile(r"\{\{\s*(char|user|original)\s*\}\}|<(BOT|USER)>", re.IGNORECASE)


def expand(text: str, char: str, user: str, original: str = "") -> str:
    if "{" not in text and "<" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        name = (m.group(1) or m.group(2)).lower()
        return {"char": char, "bot": char, "user": user, "original": original}[name]

    return _MACRO.sub(one, text)

"""The character book (a card's lorebook, SillyTavern's world info): which entries a turn's prompt carries.

An entry is activated when one of its ``keys`` appears in the text scanned: the last ``scan_depth`` messages,
the new line included. Keys match case-insensitively unless the entry is ``case_sensitive``; a key that is one
word matches whole words only ("ring" is not in "bring"), a longer key anywhere. A ``selective`` entry also needs
its ``secondary_keys``, by its logic (``extensions.selectiveLogic``, as SillyTavern writes it: 0 AND ANY, the
default; 1 NOT ALL; 2 NOT ANY; 3 AND ALL). A ``constant`` entry is always in; a disabled one (``enabled: false``)
never. With ``recursive_scanning`` the text of the entries activated is scanned too, for entries they mention.

What is activated must fit the book's ``token_budget``: constant entries first, then by ``priority`` (higher
first), then ``insertion_order``; an entry that does not fit is left out. The ones kept go into the prompt in
``insertion_order`` (lower first) at their ``position``: ``before_char`` or ``after_char`` (the default) the
character's description. Tokens are estimated as one per 4 bytes of UTF-8 (the server counts without the model's
tokenizer, which lives on the engine's thread), so a budget is honoured by that count.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SCAN_DEPTH = 2  # messages scanned, as SillyTavern's default
DEFAULT_TOKEN_BUDGET = 512
MAX_RECURSION = 4  # rounds of recursive scanning: a book whose entries mention each other in a ring stops here


class BookError(ValueError):
    pass


def estimate_tokens(text: str) -> int:
    return (len(text.encode()) + 3) // 4


@dataclass
class Entry:
    id: int | str
    keys: list[str]
    content: str
    enabled: bool = True
    insertion_order: float = 0
    case_sensitive: bool = False
    selective: bool = False
    secondary_keys: list[str] = field(default_factory=list)
    constant: bool = False
    priority: float = 0
    position: str = "after_char"
    logic: int = 0  # selectiveLogic

    def matches(self, text: str) -> bool:
        if not self.enabled:
            return False
        if not any(_found(k, text, self.case_sensitive) for k in self.keys):
            return False
        if not self.selective or not self.secondary_keys:
            return True
        hits = [_found(k, text, self.case_sensitive) for k in self.secondary_keys]
        return [any(hits), not all(hits), not any(hits), all(hits)][self.logic]


@dataclass
class Book:
    entries: list[Entry]
    scan_depth: int = DEFAULT_SCAN_DEPTH
    token_budget: int = DEFAULT_TOKEN_BUDGET
    recursive: bool = False

    def activate(self, messages: Sequence[str], count: Callable[[str], int] = estimate_tokens) -> list[Entry]:
        """The entries a prompt carries, in insertion order, given the conversation's texts (oldest first)."""
        window = "\n".join(messages[-self.scan_depth :] if self.scan_depth > 0 else [])
        on = {id(e): e for e in self.entries if e.enabled and e.constant}
        found = [e for e in self.entries if id(e) not in on and e.matches(window)]
        for _ in range(MAX_RECURSION if self.recursive else 0):
            if not found:
                break
            on.update((id(e), e) for e in found)
            text = "\n".join(e.content for e in found)
            found = [e for e in self.entries if id(e) not in on and e.matches(text)]
        on.update((id(e), e) for e in found)
        ranked = sorted(on.values(), key=lambda e: (not e.constant, -e.priority, e.insertion_order))
        kept, used = [], 0
        for e in ranked:
            cost = count(e.content)
            if used + cost <= self.token_budget:
                kept.append(e)
                used += cost
        order = {id(e): i for i, e in enumerate(self.entries)}
        return sorted(kept, key=lambda e: (e.insertion_order, order[id(e)]))


def _found(key: str, text: str, case_sensitive: bool) -> bool:
    if not key:
        return False
    flags = 0 if case_sensitive else re.IGNORECASE
    if re.fullmatch(r"\w+", key):
        return re.search(rf"\b{re.escape(key)}\b", text, flags) is not None
    return (key in text) if case_sensitive else (key.lower() in text.lower())


def parse_book(raw: Any) -> Book:
    if not isinstance(raw, dict):
        raise BookError("card.data.character_book must be a map")
    entries = raw.get("entries") or []
    if not isinstance(entries, list):
        raise BookError("card.data.character_book.entries must be an array")
    return Book(
        [_entry(e, i) for i, e in enumerate(entries)],
        scan_depth=_int(raw, "scan_depth", DEFAULT_SCAN_DEPTH),
        token_budget=_int(raw, "token_budget", DEFAULT_TOKEN_BUDGET),
        recursive=bool(raw.get("recursive_scanning")),
    )


def _entry(raw: Any, index: int) -> Entry:
    where = f"card.data.character_book.entries[{index}]"
    if not isinstance(raw, dict):
        raise BookError(f"{where} must be a map")
    keys, secondary = raw.get("keys") or [], raw.get("secondary_keys") or []
    for name, value in (("keys", keys), ("secondary_keys", secondary)):
        if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
            raise BookError(f"{where}.{name} must be an array of strings")
    content = raw.get("content") or ""
    if not isinstance(content, str):
        raise BookError(f"{where}.content must be a string")
    ext = raw.get("extensions") if isinstance(raw.get("extensions"), dict) else {}
    logic = ext.get("selectiveLogic", 0) if isinstance(ext, dict) else 0
    position = raw.get("position") or "after_char"
    if position not in ("before_char", "after_char"):
        raise BookError(f"{where}.position must be before_char or after_char")
    eid = raw.get("id")
    return Entry(
        id=eid if isinstance(eid, (int, str)) and not isinstance(eid, bool) else index,
        keys=list(keys),
        content=content,
        enabled=raw.get("enabled", True) is not False,
        insertion_order=_num(raw.get("insertion_order"), where),
        case_sensitive=bool(raw.get("case_sensitive")),
        selective=bool(raw.get("selective")),
        secondary_keys=list(secondary),
        constant=bool(raw.get("constant")),
        priority=_num(raw.get("priority"), where),
        position=position,
        logic=logic if logic in (0, 1, 2, 3) else 0,
    )


def _num(value: Any, where: str) -> float:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BookError(f"{where}: insertion_order and priority must be numbers")
    return value


def _int(raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BookError(f"card.data.character_book.{key} must be a whole number >= 0")
    return value

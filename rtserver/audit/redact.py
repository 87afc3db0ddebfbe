"""What the audit log keeps of a user's text and a reply, by policy:

full       the text as it was
redacted   emails, phone numbers, card and account numbers, and keys replaced by typed placeholders
           (``<email>``, ``<phone>``, ``<card>``, ``<account>``, ``<key>``)
hash       its SHA-256 only (equal texts can be matched, none can be read)
none       nothing
"""

from __future__ import annotations

import hashlib
import re

POLICIES = ("full", "redacted", "hash", "none")

# Most specific first: a key or a card number must not be half-eaten by the phone pattern.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "key",
        re.compile(r"\b(?:rtk_[A-Za-z0-9_-]{8,}|sk-[A-Za-z0-9_-]{16,}|eyJ[\w-]+\.[\w-]+\.[\w-]+|AKIA[0-9A-Z]{16})"),
    ),
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("account", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")),  # IBAN
    ("card", re.compile(r"\b(?:\d[ -]?){12,18}\d\b")),
    ("phone", re.compile(r"(?:\(\d{2,4}\)|(?<![\w+])\+?\d{1,4})(?:[ .-]?\d{2,4}){2,4}\b")),
)


def redact(text: str) -> str:
    for kind, pattern in _PATTERNS:
        text = pattern.sub(f"<{kind}>", text)
    return text


def apply(policy: str, text: str | None) -> str | None:
    if text is None or policy == "none":
        return None
    if policy == "full":
        return text
    if policy == "redacted":
        return redact(text)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

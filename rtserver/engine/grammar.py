"""Structured replies: a JSON schema becomes a llama.cpp grammar (GBNF) that constrains sampling.

llama-cpp-python's OpenAI-style ``response_format: json_schema`` is silently unconstrained (its PR #1677 is
unmerged); its ``json_schema_to_gbnf`` converter works, and the grammar goes into the sampler chain directly. One
fix on the way: the converter's negated character classes admit characters JSON forbids inside a string. Its
string character (``[^"\\]``) admits raw control characters (a sampled newline there made 2 of 40 replies of the
bundled model fail to parse at temperature 1; llama.cpp's own converter has since excluded them), and a
``pattern``'s ``.`` (``[^\x0a\x0d]``) or ``[^,]`` admits a quote, a backslash and control characters too, so a
string could end early or break. A pattern's positive classes can hold them as well (``[ -~]`` holds a quote and a
backslash). ``_json_strings`` takes them out of every class but those of the converter's own escape rule.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from ..errors import ClientError

MAX_GRAMMAR_BYTES = 32 * 1024  # a schema's grammar: an NPC's is ~2 KB; llama.cpp refuses most beyond (repetition caps)


def schema_to_grammar(schema: dict[str, Any]) -> str:
    """GBNF for replies matching ``schema``; ``ClientError(bad_field)`` if it cannot be converted, or converts to
    more than ``MAX_GRAMMAR_BYTES`` (a maxLength of thousands spells out every repetition, and the grammar is
    parsed on the event loop before the turn starts)."""
    try:
        grammar = _convert(json.dumps(schema, sort_keys=True))
    except Exception as exc:  # the converter raises assorted errors for schemas it does not support
        raise ClientError(f"say.schema cannot be turned into a grammar: {exc}"[:300], code="bad_field") from None
    if len(grammar) > MAX_GRAMMAR_BYTES:
        raise ClientError(
            f"say.schema becomes a grammar of {len(grammar) // 1024} KB, over the {MAX_GRAMMAR_BYTES // 1024} KB "
            "limit: lower its maxLength, maxItems or other repetition counts",
            code="bad_field",
        )
    return grammar


@lru_cache(maxsize=256)
def _convert(schema_json: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    schema = _with_patterns_for_json_text(json.loads(schema_json))
    return _json_strings(str(json_schema_to_gbnf(json.dumps(schema))))


_SHORTHAND = {"d": "0-9", "w": "0-9A-Za-z_", "s": " \\t\\n\\r"}  # (\\s: \\f and \\v have no GBNF spelling)
_NOT_SCHEMAS = {"const", "enum", "default", "examples"}  # values, where a key named "pattern" is data
_NAMED_SCHEMAS = {"properties", "patternProperties", "$defs", "definitions"}  # name -> schema, whatever the name


def _with_patterns_for_json_text(schema: Any) -> Any:
    """The schema with every ``pattern`` rewritten for the converter, which makes a grammar of the JSON text
    between the string's quotes out of the pattern as if it matched that text, not the string it decodes to:
    ``\\d``, ``\\w`` and ``\\s`` (and ``\\D``, ``\\W``, ``\\S`` outside a class) become character classes (it copies
    them as they are, and llama.cpp refuses the grammar), and a literal quote or backslash becomes its JSON escape
    (copied as it is, a quote ended the string early and a backslash began an escape)."""
    if isinstance(schema, list):
        return [_with_patterns_for_json_text(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "pattern" and isinstance(value, str):
            out[key] = _pattern_for_json_text(value)
        elif key in _NAMED_SCHEMAS and isinstance(value, dict):
            out[key] = {name: _with_patterns_for_json_text(v) for name, v in value.items()}
        elif key in _NOT_SCHEMAS:
            out[key] = value
        else:
            out[key] = _with_patterns_for_json_text(value)
    return out


_JSON_ESCAPED = {'"': '\\\\"', "\\": "\\\\\\\\"}  # a literal quote or backslash -> a pattern for its JSON escape


def _pattern_for_json_text(pattern: str) -> str:
    out: list[str] = []
    in_class, i = False, 0
    while i < len(pattern):
        c = pattern[i]
        if c == '"' and not in_class:
            out.append(_JSON_ESCAPED[c])
            i += 1
            continue
        if c == "\\" and i + 1 < len(pattern):
            kind = pattern[i + 1]
            body = _SHORTHAND.get(kind.lower())
            if kind in _JSON_ESCAPED and not in_class:
                out.append(_JSON_ESCAPED[kind])
            elif body is None or (in_class and kind.isupper()):  # (a negated one inside a class has no spelling)
                out.append(pattern[i : i + 2])
            elif in_class:
                out.append(body)
            else:
                out.append(f"[^{body}]" if kind.isupper() else f"[{body}]")
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
            opening = "[^]" if pattern.startswith("^]", i + 1) else "[]" if pattern.startswith("]", i + 1) else "["
            out.append(opening)  # (a ] first in a class is one of its characters)
            i += len(opening)
            continue
        if c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


_NOT_IN_A_STRING = r'"\\\x7F\x00-\x1F'  # a quote, a backslash, DEL and the control characters, as GBNF spells them
_FORBIDDEN = ((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F))  # the same, as ranges of code points
_ESCAPES = {"t": 0x09, "r": 0x0D, "n": 0x0A, "\\": 0x5C, '"': 0x22, "[": 0x5B, "]": 0x5D}
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}


def _json_strings(grammar: str) -> str:
    """The grammar with every character class (outside quoted literals) also excluding what a JSON string cannot
    hold as it is: negated classes get the exclusions appended, positive ones lose those characters. The
    converter's classes outside its ``char`` rule all stand for characters of a string or of a number: keys and
    punctuation are literals, and a number's classes hold digits, signs and exponents only, which stay as they are.
    The ``char`` rule's ``["\\/bfnrt]`` follows a backslash (an escape): the positive classes there are left alone."""
    return "\n".join(
        _json_string_classes(line, positive=not line.startswith("char ::=")) for line in grammar.split("\n")
    )


def _json_string_classes(grammar: str, positive: bool) -> str:
    out: list[str] = []
    i, n = 0, len(grammar)
    while i < n:
        c = grammar[i]
        if c == '"':  # a literal: copied as it is
            j = i + 1
            while j < n and grammar[j] != '"':
                j += 2 if grammar[j] == "\\" else 1
            out.append(grammar[i : j + 1])
            i = j + 1
        elif c == "[":
            j = i + 1
            while j < n and grammar[j] != "]":
                j += 2 if grammar[j] == "\\" else 1
            body = grammar[i + 1 : j]
            if body.startswith("^"):
                if "\\x00-\\x1F" not in body:
                    body += _NOT_IN_A_STRING
            elif positive:
                body = _without_forbidden(body)
            out.append(f"[{body}]")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _without_forbidden(body: str) -> str:
    """A positive class's body (GBNF spelling) less the characters a JSON string cannot hold as they are; the body
    unchanged where it holds none of them, or where llama.cpp could not read it either (the converter passes a
    pattern's ``\\s`` through)."""
    try:
        ranges = _class_ranges(body)
    except (ValueError, IndexError):
        return body
    if not any(lo <= f_hi and f_lo <= hi for lo, hi in ranges for f_lo, f_hi in _FORBIDDEN):
        return body
    kept: list[tuple[int, int]] = []
    for lo, hi in ranges:
        for f_lo, f_hi in _FORBIDDEN:  # in ascending order: cut each out of what is left of the range
            if lo <= f_hi and f_lo <= hi:
                if lo < f_lo:
                    kept.append((lo, f_lo - 1))
                lo = max(lo, f_hi + 1)
        if lo <= hi:
            kept.append((lo, hi))
    if not kept:
        raise ValueError(f"the pattern's class [{body}] holds only characters a JSON string cannot hold unescaped")
    return "".join(_spell(lo) if lo == hi else f"{_spell(lo)}-{_spell(hi)}" for lo, hi in kept)


def _class_ranges(body: str) -> list[tuple[int, int]]:
    """A positive class's characters as (first, last) code points, read as llama.cpp's grammar parser reads them."""
    ranges: list[tuple[int, int]] = []
    i = 0
    while i < len(body):
        lo, i = _class_char(body, i)
        hi = lo
        if body.startswith("-", i) and i + 1 < len(body):
            hi, i = _class_char(body, i + 1)
        ranges.append((lo, hi))
    return ranges


def _class_char(body: str, i: int) -> tuple[int, int]:
    """The character at ``body[i]`` (a GBNF escape or itself) and where the next one starts."""
    if body[i] != "\\":
        return ord(body[i]), i + 1
    kind = body[i + 1]
    if kind in _HEX_DIGITS:
        end = i + 2 + _HEX_DIGITS[kind]
        return int(body[i + 2 : end], 16), end
    if kind in _ESCAPES:
        return _ESCAPES[kind], i + 2
    raise ValueError(f"unknown escape \\{kind} in a character class")


def _spell(code: int) -> str:
    return f"\\x{code:02X}" if code <= 0xFF else f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def parses(reply: str) -> bool:
    try:
        json.loads(reply)
    except ValueError:
        return False
    return True

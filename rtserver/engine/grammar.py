"""Structured replies: a JSON schema becomes a llama.cpp grammar (GBNF) that constrains sampling.

llama-cpp-python's OpenAI-style ``response_format: json_schema`` is silently unconstrained (its PR #1677 is
unmerged); its ``json_schema_to_gbnf`` converter works, and the grammar goes into the sampler chain directly. One
fix on the way: the converter's negated character classes admit characters JSON forbids inside a string. Its
string character (``[^"\\]``) admits raw control characters (a sampled newline there made 2 of 40 replies of the
bundled model fail to parse at temperature 1; llama.cpp's own converter has since excluded them), and a
``pattern``'s ``.`` (``[^\x0a\x0d]``) or ``[^,]`` admits a quote, a backslash and control characters too, so a
string could end early or break. ``_json_strings`` makes every negated class exclude all of them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from ..errors import ClientError


def schema_to_grammar(schema: dict[str, Any]) -> str:
    """GBNF for replies matching ``schema``; ``ClientError(bad_field)`` if it cannot be converted."""
    try:
        return _convert(json.dumps(schema, sort_keys=True))
    except Exception as exc:  # the converter raises assorted errors for schemas it does not support
        raise ClientError(f"say.schema cannot be turned into a grammar: {exc}"[:300], code="bad_field") from None


@lru_cache(maxsize=256)
def _convert(schema_json: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return _json_strings(str(json_schema_to_gbnf(schema_json)))


_NOT_IN_A_STRING = r'"\\\x7F\x00-\x1F'  # a quote, a backslash, DEL and the control characters, as GBNF spells them


def _json_strings(grammar: str) -> str:
    """The grammar with every negated character class (``[^...]``, outside quoted literals) also excluding what a
    JSON string cannot hold as it is. The converter's negated classes all stand for characters of a string:
    numbers, keys and punctuation are literals and positive classes."""
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
            if body.startswith("^") and "\\x00-\\x1F" not in body:
                body += _NOT_IN_A_STRING
            out.append(f"[{body}]")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parses(reply: str) -> bool:
    try:
        json.loads(reply)
    except ValueError:
        return False
    return True

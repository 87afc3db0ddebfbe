"""Structured replies: a JSON schema becomes a llama.cpp grammar (GBNF) that constrains sampling.

llama-cpp-python's OpenAI-style ``response_format: json_schema`` is silently unconstrained (its PR #1677 is
unmerged); its ``json_schema_to_gbnf`` converter works, and the grammar goes into the sampler chain directly. One
fix on the way: that converter's string character (``[^"\\]``) admits raw control characters, which JSON forbids
inside a string (a sampled newline there made 2 of 40 replies of the bundled model fail to parse at temperature 1);
llama.cpp's own converter has since excluded them, and so does ``_convert``.
"""

from __future__ import annotations

import json
import re
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

    return _LOOSE_CHAR.sub(lambda m: _JSON_CHAR, str(json_schema_to_gbnf(schema_json)))


# The converter's rule for a character of a JSON string, as it begins (any but a quote or a backslash), and that
# first alternative as JSON has it (no control characters either).
_LOOSE_CHAR = re.compile(r'^char ::= \[\^"\\\\\]', re.M)
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F]'


def parses(reply: str) -> bool:
    try:
        json.loads(reply)
    except ValueError:
        return False
    return True

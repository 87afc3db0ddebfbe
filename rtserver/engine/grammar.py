"""Structured replies: a JSON schema becomes a llama.cpp grammar (GBNF) that constrains sampling.

llama-cpp-python's OpenAI-style ``response_format: json_schema`` is silently unconstrained (its PR #1677 is
unmerged); its ``json_schema_to_gbnf`` converter works, and the grammar goes into the sampler chain directly.
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

    return str(json_schema_to_gbnf(schema_json))


def parses(reply: str) -> bool:
    try:
        json.loads(reply)
    except ValueError:
        return False
    return True

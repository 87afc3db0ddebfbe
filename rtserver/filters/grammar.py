"""Admit filter: a turn whose grammar (given, or made from a JSON schema) the model's engine cannot use is refused
with ``bad_field`` before it starts, instead of failing mid-turn."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ClientError
from .base import TurnContext

SCHEMA_REFUSED = (
    "llama.cpp refused the grammar it becomes; the usual causes are a large maxLength, maxItems or repetition "
    "count (llama.cpp caps how far a grammar may repeat) and regex features it lacks (\\d, \\w and \\s are supported)"
)


class GrammarFilter:
    def __init__(self, grammar_error: Callable[[str, str], str | None]) -> None:
        self.grammar_error = grammar_error  # (model, GBNF) -> why the model's engine cannot use it, or None

    def admit(self, ctx: TurnContext) -> None:
        rule = ctx.request.grammar
        if rule is None or not (why := self.grammar_error(ctx.model, rule)):
            return
        where = "schema" if ctx.structured else "grammar"
        raise ClientError(f"say.{where}: {SCHEMA_REFUSED if ctx.structured else why}"[:300], code="bad_field")

    def undo(self, ctx: TurnContext) -> None:
        return None

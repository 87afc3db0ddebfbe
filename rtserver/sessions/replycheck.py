"""Whether a structured reply fits its schema: ``turn.end.parsed`` (it is JSON), ``valid`` (it fits the schema, by
the ``jsonschema`` validator of the schema's own draft) and ``path`` (where the first violation is, as a JSON
pointer). The grammar a schema becomes constrains the reply's shape, not everything a schema says (``minimum``,
``uniqueItems``, ``format``, a reply cut by ``max_tokens``), so the check is made on the text sent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema


@dataclass(frozen=True)
class Checked:
    parsed: bool
    valid: bool
    path: str | None  # the first violation's location (JSON pointer; "" is the whole reply), None when valid


def check_reply(text: str, schema: dict[str, Any] | None) -> Checked:
    try:
        value = json.loads(text)
    except ValueError:
        return Checked(False, False, None)
    if schema is None:
        return Checked(True, True, None)
    validator = jsonschema.validators.validator_for(schema)(schema)
    first = jsonschema.exceptions.best_match(validator.iter_errors(value))  # (None when there is none)
    if first is None:
        return Checked(True, True, None)
    return Checked(True, False, "".join(f"/{_escape(str(p))}" for p in first.absolute_path))


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a JSON schema (checked against its draft's meta-schema), or None."""
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        return f"{exc.message} at {'/'.join(map(str, exc.absolute_path)) or 'the top'}"
    return None


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")

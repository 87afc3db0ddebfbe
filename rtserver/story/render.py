"""The prompt of a card session's turn, as chat messages the model's own template then renders. The template:

    system     the card's system prompt (``{{original}}``: the session's persona, or DEFAULT_SYSTEM), then the
               book's entries placed ``before_char``, the description, "{{char}}'s personality: ...",
               "Scenario: ...", the entries placed ``after_char``, and "[Example dialogue]" blocks from
               ``mes_example`` (its ``<START>`` lines), paragraphs apart
    ...        the history: a greeting is an assistant message; each turn its user line and its reply
    system     "[Story state]" and one "key: value" line per story variable (values that are not strings as JSON),
               after the turn the variables last changed at (``Story.vars_at``), or before the newest line when
               that turn is not on the path
    system     "[Author's note: ...]", ``note_depth`` messages from the end (0: after the newest line)
    user       the new line
    system     the card's post-history instructions (``{{original}}``: nothing)

Every text has ``{{char}}`` and ``{{user}}`` expanded. The card's text comes first and changes only with the card,
so sessions of one card share its KV (engine/reuse.py); an entry activated mid-story changes the system message,
and what follows it is prefilled again (``turn.end.usage`` shows it). ``creator_notes`` are never rendered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..engine.base import Message
from .lorebook import Entry
from .macros import expand
from .state import Story

DEFAULT_SYSTEM = "Write {{char}}'s next reply in a fictional story between {{char}} and {{user}}."
IMPERSONATE = "[Write {{user}}'s next line in the story, as {{user}} would say it. Write only that line.]"


@dataclass
class Rendered:
    messages: list[Message]
    lore: list[int | str]  # the ids of the book's entries this prompt carries


def system_block(story: Story, persona: str | None, entries: Sequence[Entry]) -> str:
    card, char, user = story.card, story.card.name, story.user
    original = persona or DEFAULT_SYSTEM
    head = card.system_prompt or "{{original}}"
    parts = [expand(head, char, user, original)]
    parts += [e.content for e in entries if e.position == "before_char"]
    parts.append(card.description)
    if card.personality:
        parts.append(f"{{{{char}}}}'s personality: {card.personality}")
    if card.scenario:
        parts.append(f"Scenario: {card.scenario}")
    parts += [e.content for e in entries if e.position != "before_char"]
    parts += _examples(card.mes_example)
    return "\n\n".join(expand(p, char, user, original) for p in parts if p.strip())


def _examples(text: str) -> list[str]:
    blocks = [b.strip() for b in text.replace("\r\n", "\n").split("<START>")]
    return [f"[Example dialogue]\n{b}" for b in blocks if b]


def state_block(variables: dict[str, Any]) -> str:
    lines = [f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}" for k, v in variables.items()]
    return "[Story state]\n" + "\n".join(lines)


def render(
    story: Story,
    path: Sequence[Any],
    user_line: str | None,
    *,
    persona: str | None = None,
    continue_last: bool = False,
    impersonate: bool = False,
) -> Rendered:
    """The messages of a turn whose parent's path is ``path`` (oldest first) and whose new line is ``user_line``
    (None: a continue, an impersonation or a regenerated greeting)."""
    char, user = story.card.name, story.user
    history: list[Message] = []
    after: dict[int, int] = {0: 0}  # turn id -> how many history messages precede what follows it
    for node in path:
        if node.kind == "greeting":
            history.append(Message("assistant", node.reply))
        elif node.user is None and history and history[-1].role == "assistant":
            history[-1] = Message("assistant", history[-1].content + node.reply)  # a continue extends it
        else:
            if node.user is not None:
                history.append(Message("user", node.user))
            history.append(Message("assistant", node.reply))
        after[node.tid] = len(history)
    base = history + ([Message("user", user_line)] if user_line is not None else [])
    book = story.card.book
    entries = book.activate([m.content for m in base]) if book is not None else []
    last = len(base) - (1 if continue_last and base else 0)  # nothing goes after a reply being continued
    inserts: list[tuple[int, int, Message]] = []  # (index into base, order among equals, message)
    if story.vars:
        at = after.get(story.vars_at, len(history))
        inserts.append((min(at, last), 0, Message("system", state_block(story.vars))))
    if story.note:
        note = expand(f"[Author's note: {story.note}]", char, user)
        inserts.append((max(0, min(last, len(base) - story.note_depth)), 1, Message("system", note)))
    if story.card.post_history_instructions and not impersonate:
        phi = expand(story.card.post_history_instructions, char, user, "")
        if phi.strip():
            inserts.append((last, 2, Message("system", phi)))
    if impersonate:
        inserts.append((last, 3, Message("system", expand(IMPERSONATE, char, user))))
    out = [Message("system", system_block(story, persona, entries))]
    pending = sorted(inserts, key=lambda x: (x[0], x[1]))
    for i, m in enumerate(base):
        out += [msg for at, _, msg in pending if at == i]
        out.append(m)
    out += [msg for at, _, msg in pending if at >= len(base)]
    return Rendered(out, [e.id for e in entries])

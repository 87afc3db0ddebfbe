"""The prompt of a card session's turn, as chat messages the model's own template then renders. The template:

    system     the card's system prompt (``{{original}}``: the session's persona, or DEFAULT_SYSTEM), then the
               book's constant entries placed ``before_char``, the description, "{{char}}'s personality: ...",
               "Scenario: ...", the constant entries placed ``after_char``, and "[Example dialogue]" blocks from
               ``mes_example`` (its ``<START>`` lines), paragraphs apart
    ...        the history: a greeting is an assistant message; each turn its user line and its reply
    system     "[Lore]" and the keyed entries activated (``before_char`` ones first, each in insertion order),
               before the line of the earliest of the latest turns that activated the same entries
    system     "[Story state]" and one "key: value" line per story variable (values that are not strings as JSON),
               after the turn the variables last changed at (``Story.vars_at``), or before the newest line when
               that turn is not on the path
    system     "[Author's note: ...]", ``note_depth`` messages from the end (0: after the newest line)
    user       the new line
    system     the card's post-history instructions (``{{original}}``: nothing)

Every text has ``{{char}}`` and ``{{user}}`` expanded; ``creator_notes`` are never rendered. The card's text comes
first and changes only with the card, so sessions of one card share its KV (engine/reuse.py). What changes during a
story sits where a change costs the least prefill: the lore and state blocks stay where they are while what they
hold does not change (nothing to prefill), and a change moves them to before the newest line, so the prefill runs
from their old place (the turns since the last change), never from the card's text. Keyed entries go in the lore
block, not the system message, for that reason (their ``position`` orders them within it); ``turn.end.usage``
shows what a turn reused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..engine.base import Message
from .lorebook import Book, Entry
from .macros import expand
from .state import Story

Keys = tuple[int, ...]  # the keyed entries a prompt activated, by their place in the book
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


def lore_block(entries: Sequence[Entry]) -> str:
    ordered = [e for e in entries if e.position == "before_char"] + [e for e in entries if e.position != "before_char"]
    return "[Lore]\n" + "\n\n".join(e.content for e in ordered)


def render(
    story: Story,
    path: Sequence[Any],
    user_line: str | None,
    *,
    persona: str | None = None,
    continue_last: bool = False,
    impersonate: bool = False,
    seen: dict[int, tuple[int, ...]] | None = None,
) -> Rendered:
    """The messages of a turn whose parent's path is ``path`` (oldest first) and whose new line is ``user_line``
    (None: a continue, an impersonation or a regenerated greeting). ``seen``: the keyed entries each past turn's
    prompt activated, by turn id, kept between calls (a cache: it only saves scanning them again)."""
    char, user = story.card.name, story.user
    history, after, asked = _history(path)
    base = history + ([Message("user", user_line)] if user_line is not None else [])
    constant: list[Entry] = []
    last = len(base) - (1 if continue_last and base else 0)  # nothing goes after a reply being continued
    inserts: list[tuple[int, int, Message]] = []  # (index into base, order among equals, message)
    kept: list[Entry] = []
    if story.card.book is not None:
        kept, at = _lore(story.card.book, history, base, asked, {} if seen is None else seen)
        constant = [e for e in kept if e.constant]
        if keyed := [e for e in kept if not e.constant]:
            inserts.append((min(at, last), 0, Message("system", expand(lore_block(keyed), char, user))))
    if story.vars:
        at = after.get(story.vars_at, len(history))
        inserts.append((min(at, last), 1, Message("system", state_block(story.vars))))
    if story.note:
        note = expand(f"[Author's note: {story.note}]", char, user)
        inserts.append((max(0, min(last, len(base) - story.note_depth)), 2, Message("system", note)))
    if story.card.post_history_instructions and not impersonate:
        phi = expand(story.card.post_history_instructions, char, user, "")
        if phi.strip():
            inserts.append((last, 3, Message("system", phi)))
    if impersonate:
        inserts.append((last, 4, Message("system", expand(IMPERSONATE, char, user))))
    out = [Message("system", system_block(story, persona, constant))]
    pending = sorted(inserts, key=lambda x: (x[0], x[1]))
    for i, m in enumerate(base):
        out += [msg for at, _, msg in pending if at == i]
        out.append(m)
    out += [msg for at, _, msg in pending if at >= len(base)]
    return Rendered(out, [e.id for e in kept])


def _history(path: Sequence[Any]) -> tuple[list[Message], dict[int, int], list[tuple[int, int]]]:
    """The history's messages; after each turn id, how many messages precede what follows it; and each turn with
    a user line as (turn id, the index of that line)."""
    history: list[Message] = []
    after: dict[int, int] = {0: 0}
    asked: list[tuple[int, int]] = []
    for node in path:
        if node.kind == "greeting":
            history.append(Message("assistant", node.reply))
        elif node.user is None and history and history[-1].role == "assistant":
            history[-1] = Message("assistant", history[-1].content + node.reply)  # a continue extends it
        else:
            if node.user is not None:
                asked.append((node.tid, len(history)))
                history.append(Message("user", node.user))
            history.append(Message("assistant", node.reply))
        after[node.tid] = len(history)
    return history, after, asked


def _lore(
    book: Book, history: list[Message], base: list[Message], asked: list[tuple[int, int]], seen: dict[int, Keys]
) -> tuple[list[Entry], int]:
    """The entries this prompt carries, and where the block of keyed ones goes: before the line of the earliest
    turn in the run of latest turns whose prompts activated the same keyed entries (before the new line when they
    changed now). So the block moves only when the set changes, and a change costs a prefill from the block's
    old place (the turns since the last change), never the whole story."""
    index = {id(e): i for i, e in enumerate(book.entries)}

    def keys(entries: list[Entry]) -> Keys:
        return tuple(index[id(e)] for e in entries if not e.constant)

    kept = book.activate([m.content for m in base])
    now, at = keys(kept), len(history)
    for tid, line in reversed(asked):
        if tid not in seen:
            seen[tid] = keys(book.activate([m.content for m in history[: line + 1]]))
        if seen[tid] != now:
            break
        at = line
    return kept, at

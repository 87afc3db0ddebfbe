"""A card session's story, as frames change it: opening one (its greetings become the first turns), story
variables and the author's note (``session.update``), and edits (``edit``: an edited sibling of a turn).

The card's first message and alternate greetings open the story as turns of kind ``greeting``, siblings under
the root (ids 1, 2, ...), the first message at the head; a client shows another greeting by ``rollback`` to it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from ..errors import ClientError
from ..story.card import CardError, parse_card
from ..story.macros import expand
from ..story.state import DEFAULT_NOTE_DEPTH, DEFAULT_USER, Story
from .manager import SessionManager
from .session import Session
from .store import TID_BLOCK

MAX_VARS_BYTES = 16384  # story variables as JSON: they are rendered into every prompt


def new_story(card: dict[str, Any], fields: dict[str, Any], max_text: int) -> Story:
    try:
        parse_card(card)
    except CardError as exc:
        raise ClientError(f"session.open.card: {exc}"[:300], code="bad_field") from None
    story = Story(card, DEFAULT_USER, {}, 0, "", DEFAULT_NOTE_DEPTH)
    return changed(story, fields, 0, max_text, "session.open")


def changed(story: Story, fields: dict[str, Any], head: int, max_text: int, frame: str) -> Story:
    """The story after a frame's ``user``, ``vars``, ``unset``, ``note`` and ``note_depth``. The variables' block
    moves to after ``head`` only when they change (``Story.vars_at``)."""
    variables = dict(story.vars)
    for key, value in (fields.get("vars") or {}).items():
        if value is not None:  # null is absent: it changes nothing (``unset`` removes a variable)
            variables[key] = value
    for key in fields.get("unset") or ():
        variables.pop(key, None)
    size = len(json.dumps(variables, ensure_ascii=False, default=_refuse))
    if size > MAX_VARS_BYTES:
        raise ClientError(f"{frame}.vars: the variables come to {size} bytes of JSON; the limit is {MAX_VARS_BYTES}")
    for key in ("user", "note"):
        if len(fields.get(key) or "") > max_text:
            raise ClientError(f"{frame}.{key} is longer than {max_text} characters", code="too_large")
    new = replace(
        story,
        user=fields.get("user") or story.user,
        vars=variables,
        note=fields["note"] if "note" in fields else story.note,
        note_depth=fields.get("note_depth", story.note_depth),
    )
    if variables != story.vars:
        new.vars_at = head
    return new


def _refuse(value: Any) -> Any:
    raise ClientError("vars: a variable's value must be a string, number, boolean, array or map")


def greetings(story: Story) -> list[str]:
    card = story.card
    texts = [card.first_mes, *card.alternate_greetings]
    return [expand(t, card.name, story.user) for t in texts if t.strip()]


async def open_story(m: SessionManager, s: Session) -> None:
    """Write the greetings of a session just opened with a card as its first turns, the first message at the
    head."""
    assert s.story is not None
    texts = greetings(s.story)
    if not texts:
        return
    h = s.history
    nodes = [h.new_turn("greeting", None, 0) for _ in texts]
    if nodes[-1].tid > s.reserved:
        await m.store.reserve_tids(s.sid, s.gen, nodes[-1].tid + TID_BLOCK - 1)
        s.reserved = nodes[-1].tid + TID_BLOCK - 1
    for node, text in zip(nodes, texts, strict=True):
        node.reply, node.reason = text, "stop"
        await m.store.save_turn(s.sid, s.gen, node)
        h.commit(node)
    if h.head != nodes[0].tid:
        await m.store.set_head(s.sid, s.gen, nodes[0].tid)
        h.head = nodes[0].tid


async def update_story(m: SessionManager, s: Session, fields: dict[str, Any]) -> None:
    if s.story is None:
        raise ClientError(
            "session.update: vars, unset, note, note_depth and user need a card session (session.open with card)"
        )
    story = changed(s.story, fields, s.history.head, m.config.max_text, "session.update")
    await m.store.update_story(s.sid, s.gen, story.to_dict())
    s.set_story(story)


async def edit(m: SessionManager, s: Session, tid: int, user: str | None, reply: str | None) -> None:
    """An edited copy of turn ``tid`` as its sibling (the history stays a tree), at the head; the turns after the
    original stay on its branch."""
    if s.running:
        raise ClientError("a turn is running; wait for turn.end or cancel it before editing", code="turn_running")
    old = s.history.nodes.get(tid)
    if old is None:
        raise ClientError(f"turn {tid} does not exist in this session", code="unknown_turn")
    if user is not None and old.user is None:
        raise ClientError(f"edit.user: turn {tid} is a {old.kind} and has no user line to edit")
    m.check_text(user, "edit.user")
    m.check_text(reply, "edit.reply")
    node = s.history.new_turn(old.kind, old.user if user is None else user, old.parent)
    node.reply = old.reply if reply is None else reply
    node.reason, node.edited, node.schema, node.grammar = old.reason, tid, old.schema, old.grammar
    if node.tid > s.reserved:
        await m.store.reserve_tids(s.sid, s.gen, node.tid + TID_BLOCK - 1)
        s.reserved = node.tid + TID_BLOCK - 1
    await m.store.save_turn(s.sid, s.gen, node)
    s.history.commit(node)

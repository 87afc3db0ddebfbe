"""A session's conversation as a tree of turns, so alternatives (regenerate), continue, rollback and branches
are all moves of one ``head`` pointer. Turn ids are small integers, never reused within a session; 0 is the root.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..engine.base import Message


@dataclass
class TurnNode:
    tid: int
    parent: int
    kind: str  # say | regenerate | continue | greeting (a card's first message or an alternate greeting)
    user: str | None  # None for continue (it extends the parent's reply) and greeting
    reply: str = ""
    reason: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    schema: dict[str, Any] | None = None  # what constrained the reply, kept so that regenerate constrains it too
    grammar: str | None = None
    code: str | None = None  # with reason "error": why (engine_error, node_lost, ...), as turn.end said
    edited: int | None = None  # an edited copy of this turn (``edit``), a sibling of it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """The turn as snapshots show it (PROTOCOL.md: ``snap.turns``)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("schema", "grammar", "edited")}
        if self.edited is not None:
            out["edited"] = self.edited
        return out


class History:
    def __init__(self) -> None:
        self.nodes: dict[int, TurnNode] = {}
        self.head = 0
        self.next_tid = 1

    def path(self, upto: int | None = None) -> list[TurnNode]:
        out, tid = [], self.head if upto is None else upto
        while tid:
            node = self.nodes.get(tid)
            if node is None:  # lost to journal damage: the path starts after it
                break
            out.append(node)
            tid = node.parent
        return out[::-1]

    def new_turn(self, kind: str, user: str | None, parent: int) -> TurnNode:
        node = TurnNode(self.next_tid, parent, kind, user)
        self.next_tid += 1
        return node

    def commit(self, node: TurnNode) -> None:
        self.nodes[node.tid] = node
        self.next_tid = max(self.next_tid, node.tid + 1)
        self.head = node.tid

    def messages(self, persona: str | None, upto: int) -> list[Message]:
        """System persona, then user/assistant messages along the path to ``upto``; continues are merged."""
        out: list[Message] = [Message("system", persona)] if persona else []
        for node in self.path(upto):
            if node.kind == "greeting":
                out.append(Message("assistant", node.reply))
            elif node.user is None and out and out[-1].role == "assistant":
                out[-1] = Message("assistant", out[-1].content + node.reply)
                continue
            if node.user is not None:
                out.append(Message("user", node.user))
            out.append(Message("assistant", node.reply))
        return out

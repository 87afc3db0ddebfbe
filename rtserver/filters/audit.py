"""Admit filter and turn filter in one: one audit record per turn, appended when the turn ends (never waiting:
the audit log writes it later, off the event loop), and ``busy`` for new turns while the audit log's backlog is
full, so a slow disk sheds load instead of losing records. Texts are kept under the audit policy."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from ..audit import redact
from ..audit.log import AuditLog
from ..engine.base import Event, Finish, Token
from ..errors import Busy
from .base import Handler, TurnContext


class AuditFilter:
    def __init__(self, audit: AuditLog, policy: str) -> None:
        self.audit, self.policy = audit, policy

    def admit(self, ctx: TurnContext) -> None:
        if self.audit.full:
            raise Busy("the audit log is catching up with a slow disk; retry in a few seconds", retry_after=2.0)

    def undo(self, ctx: TurnContext) -> None:
        return None

    async def __call__(self, ctx: TurnContext, inner: Handler) -> AsyncIterator[Event]:
        pieces: list[str] = []
        finish = Finish("error")
        try:
            async for event in inner(ctx):
                if isinstance(event, Token):
                    pieces.append(event.text)
                else:
                    finish = event
                yield event
        finally:
            self._record(ctx, finish, "".join(pieces))

    def _record(self, ctx: TurnContext, finish: Finish, reply: str) -> None:
        last = ctx.request.messages[-1] if ctx.request.messages else None
        said = last.content if last is not None and last.role == "user" and not ctx.request.continue_last else None
        first = (ctx.first_token - ctx.started) * 1000 if ctx.first_token else None
        self.audit.append(
            "turn",
            {"sid": ctx.sid, "tid": ctx.tid, "user": ctx.user, "ip": ctx.ip},
            {
                "model": ctx.model,
                "text": redact.apply(self.policy, said),
                "reply": redact.apply(self.policy, reply),
                "policy": self.policy,
                "prompt_tokens": finish.prompt_tokens,
                "completion_tokens": finish.completion_tokens,
                "queue_ms": round(finish.queue_ms, 3),
                "ttft_ms": round(first, 3) if first is not None else None,
                "total_ms": round((time.perf_counter() - ctx.started) * 1000, 3),
                "reason": finish.reason,
                "cache": "miss",
            },
        )

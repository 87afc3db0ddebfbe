"""Security events (auth failures, refused origins, revoked keys, limit hits) as audit records. A flood's limit
hits are recorded once per connection every ``every`` seconds, with how many were folded into the record, so
10,000 refused frames cost a few records, not 10,000."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

from ..filters.base import Client
from .log import AuditLog


class SecurityEvents:
    def __init__(self, audit: AuditLog, *, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.audit, self.every, self.clock = audit, every, clock
        self._last: weakref.WeakKeyDictionary[Client, tuple[float, int]] = weakref.WeakKeyDictionary()

    def __call__(self, kind: str, client: Client, detail: str) -> None:
        folded = 0
        if kind == "rate_limited":
            now = self.clock()
            at, folded = self._last.get(client, (-self.every, 0))
            if now - at < self.every:
                self._last[client] = (at, folded + 1)
                return
            self._last[client] = (now, 0)
        user = client.principal.user if client.principal is not None else ""
        self.audit.append(kind, {"user": user, "ip": client.ip}, {"detail": detail[:200], "folded": folded})

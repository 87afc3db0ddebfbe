"""Connection filter: connection counts and frame rates per client IP and per user.

- connections per IP, and of those, connections that have not sent ``hello`` yet: a full count refuses the
  handshake (429), and a connection that slipped past it (concurrent handshakes) is closed at once with 1013;
  counted in process, and with Redis across the nodes (``SharedCounts``: the node's count is checked against
  every live node's when a connection opens).
- frames per minute, per user (after ``hello``) and per IP: a frame over either limit gets
  ``error{rate_limited, retry_after}`` and the connection stays open (GCRA; shared by every node with Redis).
  A connection with an API key (a trusted backend carrying many players' frames) is not rate limited.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from rtprotocol import errors as E

from ..errors import RateLimited, Refused
from ..limits import Decision, Limit, Limiter
from ..limits.counts import SharedCounts
from .base import Client, NoConnection, Refusal, Report


@dataclass(frozen=True)
class ConnectionLimits:
    per_ip: int = 0  # 0: no limit
    pending_per_ip: int = 0  # connections without hello yet
    frames_per_min: float = 0.0  # per user
    frames_per_min_ip: float = 0.0


class LimitsFilter(NoConnection):
    def __init__(
        self, limits: ConnectionLimits, limiter: Limiter, report: Report, counts: SharedCounts | None = None
    ) -> None:
        self.limits, self.limiter, self.report = limits, limiter, report
        self.connections: Counter[str] = Counter()
        self.pending: Counter[str] = Counter()
        self.counts = counts if (limits.per_ip or limits.pending_per_ip) else None

    def _full(self, ip: str) -> str | None:
        lim = self.limits
        if lim.per_ip and self.connections[ip] >= lim.per_ip:
            return f"{self.connections[ip]} connections from this address (the limit is {lim.per_ip})"
        if lim.pending_per_ip and self.pending[ip] >= lim.pending_per_ip:
            return f"{self.pending[ip]} connections from this address have not sent hello yet"
        return None

    def handshake(self, path: str, headers: dict[str, str], client: Client) -> Refusal | None:
        full = self._full(client.ip)
        if full is None:
            return None
        self.report("rate_limited", client, full)
        return Refusal(429, f"too many connections: {full}; retry later\n")

    def opened(self, client: Client) -> Awaitable[None] | None:
        full = self._full(client.ip)
        if full is not None:
            self._refuse(client, full)
        client.opened = True
        self.connections[client.ip] += 1
        self.pending[client.ip] += 1
        return None if self.counts is None else self._opened_everywhere(client)

    async def _opened_everywhere(self, client: Client) -> None:
        assert self.counts is not None
        ip, lim = client.ip, self.limits
        ok = await self.counts.acquire(
            [("c:" + ip, self.connections[ip], lim.per_ip), ("p:" + ip, self.pending[ip], lim.pending_per_ip)]
        )
        if ok or (ok is None and self.counts.fail_open):
            return
        self.closed(client)
        self._refuse(client, "this address's connections across the nodes" if ok is False else "Redis is down")

    def _refuse(self, client: Client, full: str) -> None:
        self.report("rate_limited", client, full)
        raise Refused(f"too many connections: {full}", code="rate_limited", close=E.CLOSE_TRY_LATER)

    def closed(self, client: Client) -> None:
        if not client.opened:
            return
        client.opened = False
        _down(self.connections, client.ip)
        self._share("c:", client.ip, self.connections)
        if not client.hello:
            _down(self.pending, client.ip)
            self._share("p:", client.ip, self.pending)

    def _share(self, kind: str, ip: str, counts: Counter[str]) -> None:
        """Tell the other nodes this node's count now (in the background: closing never waits on Redis)."""
        if self.counts is not None:
            self.counts.tell(kind + ip, counts[ip])

    def frame(self, frame: dict[str, Any], client: Client) -> Awaitable[None] | None:
        update: Awaitable[None] | None = None
        if frame["t"] == "hello" and not client.hello:
            client.hello = True
            if client.opened:
                _down(self.pending, client.ip)
                if self.counts is not None:  # told before hello is answered: the place is free everywhere
                    update = self.counts.set("p:" + client.ip, self.pending[client.ip])
        limits = self._frame_limits(client)
        decided = self.limiter.take(limits) if limits else None
        if update is None and not isinstance(decided, Awaitable):
            if decided is not None:
                self._check(decided, client, frame)
            return None
        return self._check_later(update, decided, client, frame)

    def _frame_limits(self, client: Client) -> Sequence[Limit]:
        if client.principal is not None and client.principal.kind == "key":
            return ()  # a trusted backend multiplexing many players: not limited as one client
        out = []
        user = client.principal.user if client.principal is not None else ""
        if user:
            per_min = client.principal.limit("frames_per_min", self.limits.frames_per_min)  # type: ignore[union-attr]
            if per_min:
                out.append(Limit("f:u:" + user, per_min))
        if self.limits.frames_per_min_ip:
            out.append(Limit("f:ip:" + client.ip, self.limits.frames_per_min_ip))
        return out

    async def _check_later(
        self,
        update: Awaitable[None] | None,
        decided: Decision | Awaitable[Decision] | None,
        client: Client,
        frame: dict[str, Any],
    ) -> None:
        if update is not None:
            await update
        if isinstance(decided, Awaitable):
            decided = await decided
        if decided is not None:
            self._check(decided, client, frame)

    def _check(self, d: Decision, client: Client, frame: dict[str, Any]) -> None:
        if not d.allowed:
            self.report("rate_limited", client, f"frames ({frame['t']})")
            raise RateLimited(f"too many frames; retry in {d.retry_after:g} s", retry_after=d.retry_after)


def _down(counts: Counter[str], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]

"""Cards registered by ``card.put``: a card too large for a ``session.open`` frame (a large character book) is
sent once, in a frame of its own (``welcome.limits.max_card_bytes``), and named afterwards by its ``cid`` (its
digest: a new version of a card is a new ``cid``). Kept in memory and as ``data_dir/cards/<cid>.json``, so a cid
outlives a restart; a session opened with one keeps its own copy of the card (its journal is whole without it)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from ..errors import ClientError, StoreFailed
from .card import CardError, card_digest, parse_card

CID = re.compile(r"[0-9a-f]{16}")
KEEP = 256  # cards held in memory (the rest are read from disk when named)


class CardRegistry:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder  # None: kept in memory only
        self._cards: dict[str, dict[str, Any]] = {}

    async def put(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Register a card; the ``card`` frame's fields: ``cid``, ``name``, ``version``."""
        try:
            card = parse_card(raw)
        except CardError as exc:
            raise ClientError(f"card.put.card: {exc}"[:300]) from None
        cid = card_digest(raw)
        if cid not in self._cards and self.folder is not None:
            try:
                await asyncio.to_thread(self._write, cid, raw)
            except OSError as exc:
                raise StoreFailed(f"the card could not be written: {exc.strerror or exc}") from exc
        self._remember(cid, raw)
        return {"cid": cid, "name": card.name, "version": card.character_version}

    def _write(self, cid: str, raw: dict[str, Any]) -> None:
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"{cid}.json.tmp"
        tmp.write_text(json.dumps(raw, ensure_ascii=False))
        tmp.replace(self.folder / f"{cid}.json")

    def _remember(self, cid: str, raw: dict[str, Any]) -> None:
        self._cards.pop(cid, None)  # (most recently used last)
        if len(self._cards) >= KEEP:
            del self._cards[next(iter(self._cards))]
        self._cards[cid] = raw

    async def get(self, cid: str) -> dict[str, Any]:
        raw = self._cards.get(cid)
        if raw is None and self.folder is not None and CID.fullmatch(cid):
            try:
                raw = json.loads(await asyncio.to_thread((self.folder / f"{cid}.json").read_text))
            except (OSError, ValueError):
                raw = None
            if raw is not None:
                self._remember(cid, raw)
        if raw is None:
            raise ClientError(f"session.open.card.cid: no card {cid[:20]!r} here; send it with card.put first")
        return raw

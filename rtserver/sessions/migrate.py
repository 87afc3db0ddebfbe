"""One-time move from the single JSON-lines journal of earlier versions (``data_dir/sessions.journal``) to one
framed journal file per session. The old file is renamed ``sessions.journal.migrated``, not deleted."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import orjson

from . import records as R
from .history import TurnNode
from .journal import fsync_dir
from .store import TID_BLOCK, SessionData


def migrate_journal(old: Path, path_of: Callable[[str], Path]) -> int:
    sessions: dict[str, SessionData] = {}
    with open(old, "rb") as f:
        for line in f:
            try:
                r = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # the old format could not tell damage from a torn line: keep what reads
            sid, op = r.get("sid"), r.get("op")
            if op == "open":
                sessions[sid] = SessionData(sid, r["persona"], r["params"], r["model"])
            elif (s := sessions.get(sid)) is None:
                continue
            elif op == "turn":
                fields = ("tid", "parent", "kind", "user", "reply", "reason", "usage", "schema", "grammar")
                s.history.commit(TurnNode(**{k: r[k] for k in fields if k in r}))
            elif op == "head":
                s.history.head = r["head"]
            elif op == "update":
                s.persona, s.params = r["persona"], r["params"]
            elif op == "close":
                del sessions[sid]
    for s in sessions.values():
        path = path_of(s.sid)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A crash may have left turns past the last one written: reserve past them, as a crash would.
        reserved = s.history.next_tid - 1 + TID_BLOCK
        path.write_bytes(R.compacted(s, reserved, None))
    os.sync()
    os.replace(old, old.with_name(old.name + ".migrated"))
    fsync_dir(old.parent)
    return len(sessions)

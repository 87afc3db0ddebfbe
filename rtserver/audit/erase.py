"""Erasing audit bodies for a privacy request: every record of the named sessions or users keeps its header
(the chain stays verifiable: it runs over headers, which hold only the body's hash) and loses its body. Each
file is rewritten whole and renamed into place; a running node's own files are rewritten by its writer between
batches (``AuditLog.erase``), never by another process at the same time (the writer holds ``<node>.lock``)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from .chain import ERASED


def erase_file(path: Path, sids: set[str], users: set[str]) -> int:
    out, erased = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        if line.strip():
            rec = orjson.loads(line)
            h = rec["h"]
            if rec["b"] != ERASED and (h.get("sid") in sids or (h.get("user") and h.get("user") in users)):
                rec["b"] = ERASED
                line = orjson.dumps(rec) + b"\n"
                erased += 1
        out.append(line)
    if erased:
        tmp = path.with_suffix(".erasing")
        with tmp.open("wb") as f:
            f.write(b"".join(out))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return erased


@contextmanager
def node_lock(directory: Path, node: str, *, wait: bool) -> Iterator[bool]:
    """Hold ``<node>.lock``: True if held (not wait: False at once when another process holds it)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / f"{node}.lock").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)

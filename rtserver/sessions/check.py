"""``rtserver journal check DIR``: read every session file under a data dir and report what damage it finds.
It changes nothing (a torn tail is reported, not cut); the exit status is 1 when anything is damaged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .journal import scan
from .local import LocalStore


def check(data_dir: Path, *, out: Callable[[str], object] = print) -> int:
    store = LocalStore(data_dir, "check")
    files = records = damaged = torn = 0
    for path in sorted(store.files()):
        found = scan(path.read_bytes())
        files += 1
        records += len(found.records)
        for d in found.damage:
            damaged += 1
            out(f"{path}: damaged record at byte {d.offset} ({d.length} bytes: {d.why}); the records after it are kept")
        if found.torn_at is not None:
            torn += 1
            out(f"{path}: torn tail at byte {found.torn_at} ({found.size - found.torn_at} bytes, never acknowledged)")
    if (data_dir / "sessions.journal").exists():
        out(f"{data_dir / 'sessions.journal'}: a journal of an earlier version; the server migrates it on start")
    out(f"{files} session files, {records} good records, {damaged} damaged records, {torn} torn tails")
    return 1 if damaged or torn else 0

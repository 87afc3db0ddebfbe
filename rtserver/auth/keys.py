"""Server-side API keys for trusted backends, kept in ``<data dir>/keys.json`` as salted hashes only.

A key reads ``rtk_<id>_<secret>``: the id finds the record, the secret is checked against
``sha256(salt || secret)`` in constant time. The secret is 192 random bits, so one salted hash is enough (no
password stretching: nothing here is guessable, and a slow hash would cost every handshake). The file is
written whole and renamed into place (mode 0600); a server re-reads it when its mtime changes (looked at four times a
second), so ``rtserver keys revoke`` takes effect within a second on every node that reads the file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PREFIX = "rtk_"
FILE = "keys.json"


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def split(key: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    if not key.startswith(PREFIX):
        return None
    kid, _, secret = key[len(PREFIX) :].partition("_")
    return (kid, secret) if kid and secret else None


class KeyStore:
    def __init__(self, data_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(data_dir) / FILE
        self.clock = clock
        self.records: dict[str, dict[str, Any]] = {}
        self.shared: dict[str, dict[str, Any]] = {}  # the records in Redis (``merge``)
        self._mtime: float | None = None
        self.load()

    # --- reading --------------------------------------------------------------------------------------------

    def load(self) -> set[str]:
        """Read the file if it changed; return the ids revoked by this reading (to close their connections)."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self.records, self._mtime = {}, None
            return set()
        if mtime == self._mtime:
            return set()
        before = {k for k, r in self.records.items() if not r.get("revoked")}
        self.records = {r["id"]: r for r in json.loads(self.path.read_text() or "[]")}
        for kid, r in self.shared.items():  # what Redis shares stays known across a re-read of the file
            if kid not in self.records or r.get("revoked"):
                self.records[kid] = r
        self._mtime = mtime
        return {k for k in before if self.records.get(k, {"revoked": True}).get("revoked")}

    def merge(self, shared: dict[str, dict[str, Any]]) -> set[str]:
        """Take the key records kept in Redis (every node's view of ``keys create|revoke --redis``); return the
        ids revoked by them since the last look."""
        revoked = set()
        self.shared = shared
        for kid, r in shared.items():
            mine = self.records.get(kid)
            if r.get("revoked") and (mine is None or not mine.get("revoked")):
                revoked.add(kid)
            if mine is None or r.get("revoked"):
                self.records[kid] = r
        return revoked

    @property
    def active(self) -> list[dict[str, Any]]:
        return [r for r in self.records.values() if not r.get("revoked")]

    def check(self, key: str) -> str:
        """The key's id if it is valid; raises ``LookupError`` (unknown or malformed) or ``PermissionError``
        (revoked)."""
        parts = split(key)
        if parts is None:
            raise LookupError("not an API key")
        kid, secret = parts
        r = self.records.get(kid)
        want = r["hash"] if r else "0" * 64
        got = _digest(r["salt"] if r else "00", secret)
        if not hmac.compare_digest(want, got) or r is None:
            raise LookupError("unknown API key")
        if r.get("revoked"):
            raise PermissionError("this API key was revoked")
        return kid

    # --- writing (the CLI, and the first start of an unconfigured public server) ------------------------------

    def record(self, kid: str) -> dict[str, Any] | None:
        return self.records.get(kid)

    def create(self, name: str) -> str:
        self.load()
        kid, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(24), secrets.token_hex(16)
        self.records[kid] = {
            "id": kid,
            "name": name,
            "salt": salt,
            "hash": _digest(salt, secret),
            "created": self.clock(),
            "revoked": None,
        }
        self._write()
        return f"{PREFIX}{kid}_{secret}"

    def revoke(self, kid: str) -> bool:
        self.load()
        r = self.records.get(kid)
        if r is None or r.get("revoked"):
            return False
        r["revoked"] = self.clock()
        self._write()
        return True

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(list(self.records.values()), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._mtime = None  # read back on the next load: the mtime may not have moved within its granularity

"""``rtserver audit tail | query | export | verify``: read a data dir's audit log (every node's files in it)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from .chain import verify
from .log import files


def add_parsers(sub: argparse._SubParsersAction, data_dir: str) -> None:  # type: ignore[type-arg]
    a = sub.add_parser("audit", help="read, export and verify the audit log")
    asub = a.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    for name, text in (("tail", "the last records"), ("query", "records of a session, a user, since a time"),
                       ("export", "every record, as JSON lines"),
                       ("verify", "check the hash chains and checkpoints: exit 1 on an edited, removed, inserted "
                                  "or cut-off record")):  # fmt: skip
        p = asub.add_parser(name, help=text)
        p.add_argument("--data-dir", default=data_dir, help=f"the server's --data-dir (default {data_dir})")
        if name == "tail":
            p.add_argument("-n", type=int, default=20, help="how many (default 20)")
        if name == "verify":
            p.add_argument("--redis", metavar="URL", help="also check against the checkpoints kept in Redis")
        if name == "query":
            p.add_argument("--session", help="session id")
            p.add_argument("--user", help="user id")
            p.add_argument("--since", type=float, help="unix time, or seconds ago if negative")


def nodes(directory: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for f in files(directory):
        out.setdefault(f.name.rsplit("-", 1)[0], []).append(f)
    return out


def records(directory: Path) -> Iterator[dict[str, Any]]:
    for paths in nodes(directory).values():
        for path in paths:
            with path.open("rb") as f:
                for line in f:
                    if line.strip():
                        yield orjson.loads(line)


def run(args: argparse.Namespace) -> int:
    directory = Path(args.data_dir) / "audit"
    out = sys.stdout.buffer
    if args.audit_command == "verify":
        return _verify(directory, args.redis)
    if args.audit_command == "tail":
        for rec in deque(records(directory), maxlen=args.n):
            out.write(orjson.dumps(rec) + b"\n")
        return 0
    since = args.since if args.audit_command == "query" and args.since is not None else None
    if since is not None and since < 0:
        since = time.time() + since
    for rec in records(directory):
        h = rec["h"]
        if args.audit_command == "query" and (
            (args.session and h.get("sid") != args.session)
            or (args.user and h.get("user") != args.user)
            or (since is not None and h["at"] < since)
        ):
            continue
        out.write(orjson.dumps(rec) + b"\n")
    return 0


def _verify(directory: Path, redis_url: str | None = None) -> int:
    bad = 0
    shared = _redis_heads(redis_url) if redis_url else {}
    for node, paths in sorted(nodes(directory).items()):
        lines = [line for p in paths for line in p.read_bytes().splitlines() if line.strip()]
        cp_file = directory / f"{node}.checkpoints"
        checkpoints = [orjson.loads(x) for x in cp_file.read_bytes().splitlines()] if cp_file.exists() else []
        checkpoints += [shared[node]] if node in shared else []
        head, problems = verify(lines, checkpoints)
        for p in problems:
            print(f"{node}: line {p.line}: {p.what}" if p.line else f"{node}: {p.what}")
        print(f"{node}: {head.seq} records, {'INTACT' if not problems else f'{len(problems)} problems'}")
        bad += len(problems)
    return 1 if bad else 0


def _redis_heads(url: str) -> dict[str, dict[str, Any]]:
    from ..fleet.clients import sync_client

    with sync_client(url, 5.0) as r:
        return {k.decode().rsplit(":", 1)[1]: orjson.loads(r.get(k)) for k in r.scan_iter("rt:audit:head:*")}

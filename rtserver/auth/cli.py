"""``rtserver keys create|list|revoke`` and ``rtserver token mint``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import tokens
from .keys import KeyStore


def add_parsers(sub: argparse._SubParsersAction, data_dir: str) -> None:  # type: ignore[type-arg]
    k = sub.add_parser("keys", help="API keys for trusted backends (stored as salted hashes in the data dir)")
    ksub = k.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    for name, text in (("create", "create a key and print it (shown this once)"), ("list", "list keys"),
                       ("revoke", "revoke a key: its live connections close within a second")):  # fmt: skip
        p = ksub.add_parser(name, help=text)
        p.add_argument("--data-dir", default=data_dir, help=f"the server's --data-dir (default {data_dir})")
        if name == "create":
            p.add_argument("--name", default="", help="what the key is for")
        if name == "revoke":
            p.add_argument("id", help="the key's id (from `keys list`, or the part after rtk_)")
        if name != "list":
            p.add_argument("--redis", metavar="URL", help="also share it with every node of this Redis (rt:keys)")
    t = sub.add_parser("token", help="signed user tokens (JWT HS256), for testing: app backends mint their own")
    tsub = t.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    m = tsub.add_parser("mint", help="print a token for a user")
    m.add_argument("--user", required=True, help="the user id (the token's sub)")
    m.add_argument("--ttl", type=float, default=3600.0, help="seconds it is valid (default 3600)")
    m.add_argument("--secret", help="the server's token_secret (default: $RTSERVER_TOKEN_SECRET)")
    m.add_argument("--models", help="comma-separated models the user may open sessions with")
    m.add_argument("--ro", help="comma-separated session ids the user may watch read-only")
    m.add_argument("--frames-per-min", type=float, help="this user's frame limit")
    m.add_argument("--tokens-per-min", type=float, help="this user's generated-token limit")
    m.add_argument("--stored-sessions", type=int, help="how many sessions this user may keep stored")


def run(args: argparse.Namespace) -> int:
    if args.command == "token":
        return _mint(args)
    keys = KeyStore(Path(args.data_dir))
    if args.keys_command == "create":
        key = keys.create(args.name)
        kid = key.split("_")[1]
        print(key)
        print("keep it: only its salted hash is stored", file=sys.stderr)
    elif args.keys_command == "list":
        for r in keys.records.values():
            print(json.dumps({k: r[k] for k in ("id", "name", "created", "revoked")}))
        return 0
    else:
        kid = args.id.removeprefix("rtk_").split("_")[0]
        if not keys.revoke(kid):
            print(f"no active key {args.id}", file=sys.stderr)
            return 1
    if args.redis:
        _share(args.redis, kid, keys.record(kid))
    return 0


def _share(url: str, kid: str, record: object) -> None:
    from ..fleet.clients import sync_client
    from ..protection import KEYS_HASH

    with sync_client(url, 5.0) as r:
        r.hset(KEYS_HASH, kid, json.dumps(record))


def _split(value: str | None) -> list[str]:
    return [x for x in (value or "").split(",") if x]


def _mint(args: argparse.Namespace) -> int:
    secret = args.secret or os.environ.get("RTSERVER_TOKEN_SECRET", "")
    if not secret:
        print("rtserver: give --secret or set RTSERVER_TOKEN_SECRET (the server's token_secret)", file=sys.stderr)
        return 2
    asked = (
        ("frames_per_min", args.frames_per_min),
        ("tokens_per_min", args.tokens_per_min),
        ("stored_sessions", args.stored_sessions),
    )
    limits = {k: v for k, v in asked if v}
    print(
        tokens.mint(
            secret, args.user, args.ttl, now=time.time(), models=_split(args.models), ro=_split(args.ro), limits=limits
        )
    )
    return 0

"""``rtserver`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import __version__, privacy
from .audit import cli as audit_cli
from .auth import cli as auth_cli
from .errors import ConfigError
from .settings import BUNDLED_MODEL, CACHE_TYPES, Settings, environ, load_settings

DESCRIPTION = """\
rtserver: a real-time conversation server. Clients hold a WebSocket open (subprotocol rt.v1.msgpack or
rt.v1.json); each conversation is a persistent session; replies stream token by token from a llama.cpp model.

Settings come from defaults, then --config FILE (TOML, keys as below with underscores), then RTSERVER_*
environment variables (RTSERVER_PORT=9000), then these flags.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtserver", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"rtserver {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    d = Settings()
    s = sub.add_parser(
        "serve", help="run the server", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    s.add_argument("--host", help=f"address to listen on (default {d.host})")
    s.add_argument("--port", type=int, help=f"port for WebSocket and HTTP (default {d.port}; 0 picks a free one)")
    s.add_argument("--model", metavar="PATH.gguf", help=f"GGUF chat model (default: the bundled {BUNDLED_MODEL.name})")
    s.add_argument("--config", metavar="FILE", help="TOML settings file")
    s.add_argument("--data-dir", metavar="DIR", help=f"where sessions are journaled (default {d.data_dir})")
    s.add_argument("--tls-cert", metavar="FILE", help="PEM certificate: serve wss://")
    s.add_argument("--tls-key", metavar="FILE", help="PEM private key for --tls-cert")
    s.add_argument("--engine", choices=["llama", "scripted"], help="llama (default) or scripted (tests, load)")
    s.add_argument("--scripted-rate", type=float, help="scripted engine: tokens/s per turn (0: no pacing)")
    s.add_argument("--scripted-words", type=int, help="scripted engine: words per reply after the echo")
    s.add_argument("--n-ctx", type=int, help=f"context tokens per session (default {d.n_ctx})")
    s.add_argument("--slots", type=int, help=f"sessions whose KV stays in memory at once (default {d.slots})")
    s.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")
    s.add_argument(
        "--time-slice",
        type=int,
        metavar="TOKENS",
        help=f"when turns outnumber --slots, a running turn gives its place to a waiting one after this many tokens "
        f"and resumes later, its KV parked in host memory (default {d.time_slice}; 0: a turn keeps its place)",
    )
    s.add_argument(
        "--cache-type-k",
        choices=CACHE_TYPES,
        help=f"KV cache type of keys, as llama.cpp's -ctk (default {d.cache_type_k})",
    )
    s.add_argument(
        "--redis",
        dest="redis_url",
        metavar="URL",
        help="share sessions, frame logs and cached replies with other nodes through Redis "
        "(redis://host:6379/0, rediss:// for TLS, redis+sentinel://); without it a node keeps its sessions itself",
    )
    s.add_argument("--node-id", help="this node's name in the fleet (default: host name and process id)")
    s.add_argument(
        "--lease-ttl",
        type=float,
        help=f"with --redis: seconds before a dead node's sessions move to another (default {d.lease_ttl})",
    )
    s.add_argument("--resume-grace", type=float, help=f"seconds a turn outlives its clients (default {d.resume_grace})")
    s.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    s.add_argument(
        "--auth",
        choices=["auto", "on", "off"],
        help="credentials: auto (default: off on a loopback bind with nothing configured; otherwise on, creating "
        "and logging an API key on first start) | on | off. User tokens need RTSERVER_TOKEN_SECRET",
    )
    s.add_argument("--allowed-origins", metavar="LIST", help="comma-separated browser origins allowed (default: any)")
    s.add_argument("--trusted-proxies", metavar="LIST", help="addresses/CIDRs whose X-Forwarded-For is believed")
    s.add_argument("--limits-fail", choices=["open", "closed"], help="with --redis, when Redis is unreachable")
    s.add_argument(
        "--demo",
        action="store_true",
        default=None,
        help="serve the demo page (chat, story, NPC scene) at http://HOST:PORT/, beside the WebSocket endpoint",
    )
    j = sub.add_parser("journal", help="inspect the session journal under a data dir")
    jsub = j.add_subparsers(dest="journal_command", metavar="ACTION", required=True)
    c = jsub.add_parser(
        "check", help="read every session file and report damaged records and torn tails (changes nothing)"
    )
    c.add_argument("dir", metavar="DIR", help=f"the server's --data-dir (default {d.data_dir})", nargs="?")
    from .replay.cli import add_commands

    add_commands(sub)
    auth_cli.add_parsers(sub, d.data_dir)
    audit_cli.add_parsers(sub, d.data_dir)
    privacy.add_parsers(sub, d.data_dir)
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command in ("keys", "token"):
        sys.exit(auth_cli.run(args))
    if args.command == "audit":
        sys.exit(audit_cli.run(args))
    if args.command == "sessions":
        sys.exit(privacy.run(args))
    if args.command == "journal":
        from pathlib import Path

        from .sessions.check import check

        sys.exit(check(Path(args.dir or Settings().data_dir)))
    if args.command in ("replay", "card"):
        from .replay.cli import main as replay_main

        sys.exit(replay_main(args))
    if args.command != "serve":
        _parser().print_help()
        sys.exit(2)
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    try:
        settings = load_settings(args.config, environ(), flags)
    except ConfigError as exc:
        print(f"rtserver: {exc}", file=sys.stderr)
        sys.exit(2)
    from . import logs
    from .server import Server

    logs.configure(settings.log_level)
    try:
        import uvloop
    except ImportError:  # uvloop has no Windows build
        asyncio.run(Server(settings).run())
    else:
        uvloop.run(Server(settings).run())

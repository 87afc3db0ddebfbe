"""The ``rtserver replay record|run|diff`` and ``rtserver card`` commands (parsed in ``rtserver.cli``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from rtprotocol.recording import RecordingError, load

from . import diff as D
from . import run as R


def add_commands(sub: Any) -> None:
    r = sub.add_parser("replay", help="record sessions, play them back against a server, compare recordings")
    rs = r.add_subparsers(dest="replay_command", metavar="ACTION", required=True)
    rec = rs.add_parser("record", help="a recording proxy: clients connect to it, every frame goes to OUT")
    rec.add_argument("out", metavar="OUT", help="the recording to write (JSON lines)")
    rec.add_argument("--url", required=True, help="the server to pass frames to (ws://host:port/)")
    rec.add_argument("--listen", default="127.0.0.1:8100", help="host:port clients connect to (default %(default)s)")
    run = rs.add_parser(
        "run",
        help="play a recording's client side against a server; exit 0 same, 1 a deterministic turn differed, "
        "2 bad recording, 3 stalled or unreachable",
    )
    run.add_argument("file", metavar="FILE")
    run.add_argument("--url", required=True, help="the server to play against (ws://host:port/)")
    run.add_argument("--speed", default="1", help="1: the recorded pace (or any factor); max: as fast as it answers")
    run.add_argument("--copies", type=int, default=1, help="copies played at once: a load test (default 1)")
    run.add_argument("--out", metavar="FILE", help="write the first copy's frames as a recording (for replay diff)")
    run.add_argument("--json", metavar="FILE", help="write the report as JSON")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="show a progress bar")
    run.add_argument("--turns", action="store_true", help="list each turn's latency beside the recording's")
    d = rs.add_parser("diff", help="what changed from recording A to B; exit 0 none, 1 text/reason, 3 timings only")
    d.add_argument("a", metavar="A")
    d.add_argument("b", metavar="B")
    d.add_argument("--threshold-ms", type=float, default=50.0, help="latency change reported beyond (default 50)")
    d.add_argument("--ratio", type=float, default=2.0, help="... and beyond this factor (default 2)")
    c = sub.add_parser("card", help="read a character card file (JSON, or PNG with chara/ccv3) and print it as JSON")
    c.add_argument("file", metavar="FILE")


def main(args: argparse.Namespace) -> int:
    if args.command == "card":
        return _card(args.file)
    if args.replay_command == "record":
        from .record import record

        host, _, port = args.listen.rpartition(":")
        asyncio.run(record(args.out, args.url, host or "127.0.0.1", int(port)))
        return 0
    try:
        if args.replay_command == "diff":
            changes = D.diff(load(args.a), load(args.b), threshold_ms=args.threshold_ms, ratio=args.ratio)
            D.print_diff(changes)
            return D.exit_code(changes)
        recording = load(args.file)
    except (OSError, RecordingError) as exc:
        print(f"rtserver replay: {exc}", file=sys.stderr)
        return R.BAD_INPUT
    speed = 0.0 if args.speed == "max" else float(args.speed)
    bar = R.Progress(0, show=args.progress)
    out = Path(args.out) if args.out else None
    report = asyncio.run(R.run(recording, args.url, speed=speed, copies=args.copies, out=out, progress=bar))
    R.print_report(report, turns=args.turns)
    if args.json:
        Path(args.json).write_text(json.dumps({**report.summary(), "per_turn": report.per_turn}, indent=1) + "\n")
    return report.code


def _card(path: str) -> int:
    from ..story.card import CardError, parse_card, read_card_file

    try:
        raw = read_card_file(path)
        card = parse_card(raw)
    except (OSError, CardError) as exc:
        print(f"rtserver card: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(raw, indent=1, ensure_ascii=False))
    entries = len(card.book.entries) if card.book else 0
    print(f"# {card.name} {card.character_version} digest {card.digest}, {entries} book entries", file=sys.stderr)
    return 0

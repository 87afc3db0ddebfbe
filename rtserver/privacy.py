"""``rtserver sessions erase --user U``: a privacy request. Removes every stored session of the user (its
history, card, story state and frame log: one journal file each; and the index that counts them) and, unless
``--keep-audit-bodies``, the bodies of the user's audit records (their headers stay: the chain still verifies).

It works on a data dir directly. A node that is running holds its audit lock: its audit bodies are left, and
the command says so (erase them through the node: ``session.delete``, or stop it and run this again).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .audit.cli import nodes
from .audit.erase import erase_file, node_lock
from .sessions import records as R
from .sessions.journal import scan
from .sessions.local import LocalStore
from .sessions.quota import DirQuota


def add_parsers(sub: argparse._SubParsersAction, data_dir: str) -> None:  # type: ignore[type-arg]
    s = sub.add_parser("sessions", help="stored sessions: erase a user's (privacy requests)")
    ssub = s.add_subparsers(dest="sessions_command", metavar="ACTION", required=True)
    e = ssub.add_parser("erase", help="remove a user's sessions, frame logs and audit bodies")
    e.add_argument("--user", required=True, help="the user id (a token's sub, or key:<id> for an API key)")
    e.add_argument("--data-dir", default=data_dir, help=f"the server's --data-dir (default {data_dir})")
    e.add_argument("--keep-audit-bodies", action="store_true", help="leave the audit records' texts")


def erase_sessions(data_dir: Path, user: str) -> set[str]:
    store = LocalStore(data_dir, "erase")
    gone: set[str] = set()
    if not store.root.exists():
        return gone
    for path in list(store.files()):
        sid = path.stem
        found = R.rebuild(sid, [r for _, r in scan(path.read_bytes()).records])
        if found is not None and found.data.user == user:
            path.unlink(missing_ok=True)
            (store.aside / path.name).unlink(missing_ok=True)
            gone.add(sid)
    DirQuota(data_dir / "users", lambda sid: False).erase(user)  # and the index that counted them
    return gone


def erase_audit(data_dir: Path, user: str, sids: set[str]) -> tuple[int, list[str]]:
    directory, erased, busy = data_dir / "audit", 0, []
    for node, paths in nodes(directory).items():
        with node_lock(directory, node, wait=False) as held:
            if not held:
                busy.append(node)
                continue
            erased += sum(erase_file(p, sids, {user}) for p in paths)
    return erased, busy


def run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    sids = erase_sessions(data_dir, args.user)
    print(f"sessions erased: {len(sids)}")
    if args.keep_audit_bodies:
        return 0
    erased, busy = erase_audit(data_dir, args.user, sids)
    print(f"audit bodies erased: {erased}")
    for node in busy:
        print(f"node {node} is running: its audit bodies were left; stop it and run this again", file=sys.stderr)
    return 1 if busy else 0

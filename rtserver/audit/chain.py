"""The audit log's records and their hash chain (no I/O here: the writer and ``verify`` share it).

One JSON line per record:

    {"h": {"seq": 7, "prev": "<hash of record 6>", "bh": "<sha256 of the body>", "at": ..., "node": ...,
           "kind": "turn", "sid": ..., "user": ..., "ip": ...},
     "id": "<sha256 of h>",
     "b": {...the body: texts under the policy, counts, timings...}}

The chain runs over the headers only, and each header holds its body's hash: a body erased for a privacy request
(``"b": {"erased": true}``) leaves the chain verifiable, while an edited body no longer matches ``bh``, and an
edited, removed or inserted record breaks ``seq``/``prev``/``id``. Records cut from the end are found against
the checkpoints (the chain's head written elsewhere at intervals).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS = "0" * 64
ERASED = {"erased": True}


def _hash(obj: Any) -> str:
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class Head:
    seq: int = 0
    hash: str = GENESIS


def seal(head: Head, header: dict[str, Any], body: dict[str, Any]) -> bytes:
    """The record's line (with its newline); ``head`` moves on to it."""
    h = {**header, "seq": head.seq + 1, "prev": head.hash, "bh": _hash(body)}
    rid = _hash(h)
    head.seq, head.hash = h["seq"], rid
    return orjson.dumps({"h": h, "id": rid, "b": body}) + b"\n"


@dataclass
class Problem:
    line: int  # 1-based, over the files as given
    what: str


def verify(lines: Iterable[bytes], checkpoints: Iterable[dict[str, Any]] = ()) -> tuple[Head, list[Problem]]:
    """Walk the chain; return its head and every problem found (empty: intact)."""
    head, problems = Head(), []
    seen: dict[int, str] = {}
    for n, line in enumerate(lines, 1):
        try:
            rec = orjson.loads(line)
            h, rid, body = rec["h"], rec["id"], rec["b"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            problems.append(Problem(n, "not a record (damaged line)"))
            continue
        if _hash(h) != rid:
            problems.append(Problem(n, f"record {h.get('seq')}: its header was edited"))
        if h.get("seq") != head.seq + 1:
            problems.append(Problem(n, f"record {h.get('seq')} follows {head.seq}: records removed or inserted"))
        elif h.get("prev") != head.hash:
            problems.append(Problem(n, f"record {h.get('seq')}: not chained to the one before (inserted/replaced)"))
        if body != ERASED and _hash(body) != h.get("bh"):
            problems.append(Problem(n, f"record {h.get('seq')}: its body was edited"))
        head = Head(int(h.get("seq") or 0), rid)
        seen[head.seq] = rid
    for cp in checkpoints:
        seq, want = int(cp["seq"]), str(cp["hash"])
        if seq > head.seq:
            problems.append(Problem(0, f"checkpoint at record {seq}, but the log ends at {head.seq}: cut off"))
        elif seen.get(seq, want) != want:
            problems.append(Problem(0, f"checkpoint at record {seq} does not match the log: rewritten"))
    return head, problems

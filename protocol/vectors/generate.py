"""Writes frames.json: golden frames of protocol v1, msgpack bytes in hex beside their JSON form.

Run once when the protocol gains a frame; the bytes are then pinned and every client's tests check them
(decode all; encode byte for byte those marked ``"encode": true`` — the ones without floats, since JavaScript
encodes 1.0 as an integer). Keys are in the order the server writes them.

    python protocol/vectors/generate.py
"""

from __future__ import annotations

import json
from pathlib import Path

import msgpack

FRAMES: list[tuple[str, dict[str, object]]] = [
    ("hello", {"t": "hello", "client": "rtclient", "version": "0.1.0"}),
    ("hello_token", {"t": "hello", "id": 1, "client": "game", "token": "secret"}),
    (
        "session_open",
        {
            "t": "session.open",
            "id": 2,
            "persona": "You are Bram, a gruff blacksmith.",
            "params": {"seed": 7, "max_tokens": 64},
        },
    ),
    ("session_open_float", {"t": "session.open", "id": 3, "params": {"temperature": 0.7, "top_p": 0.9}}),
    ("session_attach", {"t": "session.open", "id": 4, "sid": "q1W2e3R4t5Y6u7I8o9P0aA", "snapshot": True}),
    (
        "session_resume",
        {"t": "session.resume", "id": 5, "sid": "q1W2e3R4t5Y6u7I8o9P0aA", "ep": "9f3a01bc", "last_seq": 41},
    ),
    ("say", {"t": "say", "id": 6, "sid": "q1W2e3R4t5Y6u7I8o9P0aA", "text": "Hello! Any work?"}),
    ("say_interrupt", {"t": "say", "id": 7, "text": "Wait, stop.", "interrupt": True, "params": {"stop": ["\n"]}}),
    (
        "say_schema",
        {
            "t": "say",
            "id": 15,
            "text": "Any work?",
            "schema": {
                "type": "object",
                "properties": {"line": {"type": "string"}, "emotion": {"enum": ["happy", "angry"]}},
                "required": ["line", "emotion"],
            },
        },
    ),
    (
        "say_grammar_priority",
        {
            "t": "say",
            "id": 16,
            "text": "Will you help me?",
            "grammar": 'root ::= ("Yes" | "No") "."',
            "params": {"priority": 5},
        },
    ),
    ("cancel", {"t": "cancel", "id": 8}),
    ("regenerate", {"t": "regenerate", "id": 9, "params": {"seed": 1}}),
    ("continue", {"t": "continue", "id": 10}),
    ("rollback", {"t": "rollback", "id": 11, "tid": 2}),
    ("session_update", {"t": "session.update", "id": 12, "persona": "You are Bram, now cheerful."}),
    ("session_close", {"t": "session.close", "id": 13}),
    ("ping", {"t": "ping", "id": 14}),
    # null is the same as absent, inside params too: this is a say with no temperature.
    ("say_null", {"t": "say", "id": 17, "text": "Hi", "sid": None, "params": {"temperature": None, "seed": 3}}),
    (
        "welcome",
        {
            "t": "welcome",
            "v": 1,
            "server": "rtserver/0.1.0",
            "node": "node-a:8000",
            "limits": {
                "max_frame_bytes": 65536,
                "max_text": 16384,
                "send_queue": 4096,
                "frame_log": 1024,
                "frame_log_ttl_s": 3600,
                "resume_grace_s": 2.5,
                "sessions_per_connection": 64,
                "bad_frames_burst": 32,
                "bad_frames_per_s": 1.0,
                "max_card_bytes": 4194304,
            },
            "hb": 20,
            "models": ["default"],
        },
    ),
    (
        "session",
        {
            "t": "session",
            "sid": "q1W2e3R4t5Y6u7I8o9P0aA",
            "seq": 0,
            "ep": "9f3a01bc",
            "state": {
                "model": "default",
                "persona": "You are Bram.",
                "params": {},
                "head": 0,
                "turns": 0,
                "running": None,
            },
            "id": 2,
        },
    ),
    (
        "session_not_recovered",
        {
            "t": "session",
            "sid": "q1W2e3R4t5Y6u7I8o9P0aA",
            "seq": 3,
            "ep": "77aa0012",
            "state": {"model": "default", "persona": None, "params": {}, "head": 1, "turns": 1, "running": None},
            "id": 5,
            "recovered": False,
            "why": "epoch_changed",
            "snap": {
                "turns": [
                    {
                        "tid": 1,
                        "parent": 0,
                        "kind": "say",
                        "user": "Hi",
                        "reply": "Hmph. Hello.",
                        "reason": "stop",
                        "usage": {"prompt": 20, "reused": 0, "completion": 4},
                    }
                ],
                "running": None,
            },
        },
    ),
    (
        "turn_start",
        {"t": "turn.start", "sid": "q1W2e3R4t5Y6u7I8o9P0aA", "seq": 1, "tid": 1, "kind": "say", "parent": 0, "id": 6},
    ),
    ("delta", {"t": "delta", "sid": "q1W2e3R4t5Y6u7I8o9P0aA", "seq": 2, "tid": 1, "x": " Hmph"}),
    ("delta_unicode", {"t": "delta", "sid": "q1W2e3R4t5Y6u7I8o9P0aA", "seq": 3, "tid": 1, "x": " café ☕"}),
    (
        "turn_end",
        {
            "t": "turn.end",
            "sid": "q1W2e3R4t5Y6u7I8o9P0aA",
            "seq": 9,
            "tid": 1,
            "reason": "stop",
            "usage": {"prompt": 31, "reused": 12, "completion": 6},
            "timings": {"queue_ms": 0.5, "ttft_ms": 4.25, "total_ms": 30.0},
            "cache": "miss",
            # the UTF-8 length and CRC-32 of the deltas above, " Hmph" + " café ☕" (an xcrc above 2^31: unsigned)
            "xlen": 15,
            "xcrc": 2902631048,
        },
    ),
    (  # as a server before xlen/xcrc sends it: a client checks them only when present
        "turn_end_cancelled",
        {
            "t": "turn.end",
            "sid": "q1W2e3R4t5Y6u7I8o9P0aA",
            "seq": 10,
            "tid": 2,
            "reason": "cancelled",
            "usage": {"prompt": 40, "reused": 38, "completion": 2},
            "timings": {"queue_ms": 0, "ttft_ms": None, "total_ms": 3},
            "cache": "miss",
        },
    ),
    (
        "turn_end_store_failed",
        {
            "t": "turn.end",
            "sid": "q1W2e3R4t5Y6u7I8o9P0aA",
            "seq": 13,
            "tid": 3,
            "reason": "error",
            "usage": {"prompt": 40, "reused": 38, "completion": 1},
            "timings": {"queue_ms": 0, "ttft_ms": 2, "total_ms": 5},
            "cache": "miss",
            "xlen": 5,
            "xcrc": 1964662820,  # " Hmph"
            "error": "the turn could not be stored; it is not in the history: send it again",
            "code": "store_failed",
        },
    ),
    (
        "session_updated",
        {
            "t": "session.updated",
            "sid": "q1W2e3R4t5Y6u7I8o9P0aA",
            "seq": 11,
            "state": {
                "model": "default",
                "persona": "You are Bram.",
                "params": {"seed": 1},
                "head": 1,
                "turns": 1,
                "running": None,
            },
        },
    ),
    ("session_closed", {"t": "session.closed", "sid": "q1W2e3R4t5Y6u7I8o9P0aA", "seq": 12}),
    (
        "error",
        {
            "t": "error",
            "code": "turn_running",
            "msg": "a turn is running; wait for turn.end, cancel it, or say with interrupt: true",
            "id": 7,
            "sid": "q1W2e3R4t5Y6u7I8o9P0aA",
        },
    ),
    ("error_busy", {"t": "error", "code": "busy", "msg": "at capacity", "retry_after": 2}),
    ("pong", {"t": "pong", "id": 14}),
    # Card sessions (PROTOCOL.md §2.3).
    (
        "session_open_card",
        {
            "t": "session.open",
            "id": 20,
            "card": {
                "spec": "chara_card_v2",
                "spec_version": "2.0",
                "data": {"name": "Bram", "description": "{{char}} is a blacksmith.", "first_mes": "Hmph."},
            },
            "user": "Ada",
            "vars": {"quest": "find the key", "coins": 3},
            "note": "It is raining.",
            "note_depth": 2,
        },
    ),
    (
        "session_update_story",
        {"t": "session.update", "id": 21, "vars": {"coins": 4}, "unset": ["quest"], "note": ""},
    ),
    ("edit", {"t": "edit", "id": 22, "tid": 3, "reply": "Hmph. Fine."}),
    (
        "card_put",
        {"t": "card.put", "id": 24, "card": {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Bram"}}},
    ),
    ("card", {"t": "card", "id": 24, "cid": "0f1e2d3c4b5a6978", "name": "Bram", "version": ""}),
    ("session_open_cid", {"t": "session.open", "id": 25, "card": {"cid": "0f1e2d3c4b5a6978"}, "user": "Ada"}),
    ("impersonate", {"t": "impersonate", "id": 23, "params": {"top_k": 40, "min_p": 0, "repeat_penalty": 1}}),
    (
        "turn_end_schema",
        {
            "t": "turn.end",
            "sid": "q1W2e3R4t5Y6u7I8o9P0aA",
            "seq": 30,
            "tid": 4,
            "reason": "stop",
            "usage": {"prompt": 120, "reused": 100, "completion": 14},
            "timings": {"queue_ms": 0, "ttft_ms": 5, "total_ms": 40},
            "cache": "miss",
            "xlen": 35,
            "xcrc": 1234,
            "parsed": True,
            "valid": False,
            "path": "/choices/0",
            "lore": [4, 1],
        },
    ),
]


def _has_float(value: object) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def main() -> None:
    out = [
        {
            "name": name,
            "json": frame,
            "msgpack": msgpack.packb(frame, use_bin_type=True).hex(),
            "encode": not _has_float(frame),
        }
        for name, frame in FRAMES
    ]
    path = Path(__file__).with_name("frames.json")
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(out)} vectors to {path}")


if __name__ == "__main__":
    main()

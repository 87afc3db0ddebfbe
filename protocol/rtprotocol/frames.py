"""Frame types of protocol v1 and their validation.

A frame is a map with a type tag ``t``. Client frames are validated against ``CLIENT_FRAMES``: required and
optional fields with their types; unknown keys are ignored (forward compatibility), unknown types are refused.
Numbers are finite and integers lie strictly between -2^53 and 2^53 (what every JSON and JavaScript peer holds
exactly); ``null`` is the same as a key left out, at the top level and inside ``params``.
Server frames are built by the helpers at the bottom, so their shape lives in one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypedDict

from .errors import ProtocolError

VERSION: Final = 1
SUBPROTOCOL_MSGPACK: Final = "rt.v1.msgpack"
SUBPROTOCOL_JSON: Final = "rt.v1.json"
SUBPROTOCOLS: Final = (SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON)

Frame = dict[str, Any]
FinishReason = Literal["stop", "length", "cancelled", "error"]
FINISH_REASONS: Final = ("stop", "length", "cancelled", "error")
TurnKind = Literal["say", "regenerate", "continue", "impersonate"]
#: ``turn.end.code`` on a turn that ended with reason ``error`` (each one is also in ``ERROR_CODES``).
TURN_ERROR_CODES: Final = ("store_failed", "engine_error", "internal")
#: Integers a peer may send: |x| < 2^53, what a double (JSON, JavaScript) holds exactly.
MAX_SAFE_INT: Final = 2**53 - 1


class Params(TypedDict, total=False):
    """Generation parameters; every field optional, the server fills defaults."""

    temperature: float
    top_p: float
    seed: int
    max_tokens: int
    stop: list[str]
    priority: int
    top_k: int
    min_p: float
    repeat_penalty: float
    repeat_last_n: int
    presence_penalty: float
    frequency_penalty: float
    cache: bool


_NUM = (int, float)
_ID = (str, int)
# field -> (accepted types, required)
_Spec = dict[str, tuple[tuple[type, ...], bool]]
_SID: _Spec = {"sid": ((str,), True)}
_OPT_SID: _Spec = {"sid": ((str,), False)}
_PARAMS: _Spec = {"params": ((dict,), False)}
# The story state of a card session (session.open with a card, session.update): the player's name for {{user}},
# story variables, the author's note and its depth.
_STORY: _Spec = {
    "user": ((str,), False),
    "vars": ((dict,), False),
    "note": ((str,), False),
    "note_depth": ((int,), False),
}

CLIENT_FRAMES: Final[dict[str, _Spec]] = {
    "hello": {
        "client": ((str,), False),
        "version": ((str,), False),
        "token": ((str,), False),
        "presence": ((bool,), False),
    },
    "session.open": {
        "sid": ((str,), False),
        "persona": ((str,), False),
        "model": ((str,), False),
        "snapshot": ((bool,), False),
        "card": ((dict,), False),
        "mode": ((str,), False),
        **_PARAMS,
        **_STORY,
    },
    "session.resume": {**_SID, "ep": ((str,), True), "last_seq": ((int,), True)},
    "say": {
        **_OPT_SID,
        "text": ((str,), True),
        "interrupt": ((bool,), False),
        "schema": ((dict,), False),
        "grammar": ((str,), False),
        **_PARAMS,
    },
    "cancel": _OPT_SID,
    "regenerate": {**_OPT_SID, **_PARAMS},
    "continue": {**_OPT_SID, **_PARAMS},
    "rollback": {**_OPT_SID, "tid": ((int,), True)},
    "session.update": {**_OPT_SID, "persona": ((str,), False), **_PARAMS, **_STORY, "unset": ((list,), False)},
    "edit": {**_OPT_SID, "tid": ((int,), True), "user": ((str,), False), "reply": ((str,), False)},
    "impersonate": {**_OPT_SID, **_PARAMS},
    "session.close": _OPT_SID,
    "card.put": {"card": ((dict,), True)},
    "session.delete": _OPT_SID,
    "ping": {"ts": (_NUM, False)},
}

PARAM_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "temperature": _NUM,
    "top_p": _NUM,
    "seed": (int,),
    "max_tokens": (int,),
    "stop": (list,),
    "priority": (int,),
    "top_k": (int,),
    "min_p": _NUM,
    "repeat_penalty": _NUM,
    "repeat_last_n": (int,),
    "presence_penalty": _NUM,
    "frequency_penalty": _NUM,
    "cache": (bool,),  # the reply cache: true opts in for any turn, false bypasses it (PROTOCOL.md §2.1)
}
PRIORITY_RANGE: Final = (-10, 10)
PENALTY_RANGE: Final = (-2.0, 2.0)  # presence_penalty and frequency_penalty, as OpenAI's API bounds them


def _type_name(types: tuple[type, ...]) -> str:
    return " or ".join(
        {"str": "string", "int": "integer", "float": "number", "dict": "map", "list": "array", "bool": "boolean"}[
            t.__name__
        ]
        for t in types
    )


def _check(value: Any, types: tuple[type, ...]) -> bool:
    # bool is an int in Python; the protocol keeps them apart.
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _number_problem(value: Any) -> str | None:
    """Why a number of the right type is still refused (NaN, infinity, an integer beyond 2^53), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INT:
        return "must be an integer between -(2^53 - 1) and 2^53 - 1"
    return None


def _checked(name: str, value: Any, types: tuple[type, ...], frame_id: Any) -> None:
    if not _check(value, types):
        raise ProtocolError("bad_field", f"{name} must be a {_type_name(types)}", frame_id=frame_id)
    problem = _number_problem(value)
    if problem is not None:
        raise ProtocolError("bad_field", f"{name} {problem}", frame_id=frame_id)


def _drop_nulls(frame: dict[str, Any]) -> None:
    """``null`` means absent (PROTOCOL.md §2): a key sent as null is removed, as if it had not been sent."""
    for key in [k for k, v in frame.items() if v is None]:
        del frame[key]


def validate_params(params: Any, *, frame_id: Any = None) -> Params:
    out: dict[str, Any] = {}
    for key, value in params.items():
        types = PARAM_TYPES.get(key)
        if types is None or value is None:
            continue  # unknown parameters are ignored like unknown keys; null is absent
        _checked(f"params.{key}", value, types, frame_id)
        out[key] = value
    if "stop" in out and not all(isinstance(s, str) and s for s in out["stop"]):
        raise ProtocolError("bad_field", "params.stop must be an array of non-empty strings", frame_id=frame_id)
    if "max_tokens" in out and out["max_tokens"] < 1:
        raise ProtocolError("bad_field", "params.max_tokens must be at least 1", frame_id=frame_id)
    if "temperature" in out and out["temperature"] < 0:
        raise ProtocolError("bad_field", "params.temperature must be >= 0", frame_id=frame_id)
    if "priority" in out and not PRIORITY_RANGE[0] <= out["priority"] <= PRIORITY_RANGE[1]:
        raise ProtocolError(
            "bad_field", "params.priority must be an integer from -10 to 10 (higher runs first)", frame_id=frame_id
        )
    if "top_p" in out and not 0 < out["top_p"] <= 1:
        raise ProtocolError("bad_field", "params.top_p must be in (0, 1]", frame_id=frame_id)
    _check_samplers(out, frame_id)
    return out  # type: ignore[return-value]


def _check_samplers(out: dict[str, Any], frame_id: Any) -> None:
    """The storyteller's samplers (llama.cpp's own): each within what llama.cpp accepts."""
    problems: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
        ("top_k", lambda v: v >= 0, "an integer >= 0 (0: off)"),
        ("min_p", lambda v: 0 <= v <= 1, "in [0, 1] (0: off)"),
        ("repeat_penalty", lambda v: 0 < v <= 10, "in (0, 10] (1: off)"),
        ("repeat_last_n", lambda v: v >= -1, "an integer >= -1 (-1: the whole context, 0: off)"),
        ("presence_penalty", lambda v: PENALTY_RANGE[0] <= v <= PENALTY_RANGE[1], "in [-2, 2] (0: off)"),
        ("frequency_penalty", lambda v: PENALTY_RANGE[0] <= v <= PENALTY_RANGE[1], "in [-2, 2] (0: off)"),
    )
    for key, ok, want in problems:
        if key in out and not ok(out[key]):
            raise ProtocolError("bad_field", f"params.{key} must be {want}", frame_id=frame_id)


def _check_story(kind: str, frame: dict[str, Any], frame_id: Any) -> None:
    if kind not in ("session.open", "session.update", "edit"):
        return  # the story keys on any other frame are unknown keys: ignored, like any other (their types unchecked)
    if "note_depth" in frame and not 0 <= frame["note_depth"] <= 1000:
        raise ProtocolError("bad_field", f"{kind}.note_depth must be from 0 to 1000", frame_id=frame_id)
    unset = frame.get("unset")
    if unset is not None and not all(isinstance(k, str) for k in unset):
        raise ProtocolError("bad_field", f"{kind}.unset must be an array of variable names", frame_id=frame_id)
    if kind == "edit" and "user" not in frame and "reply" not in frame:
        raise ProtocolError("bad_field", "edit needs user or reply (the new text)", frame_id=frame_id)


def validate_client_frame(frame: Any) -> Frame:
    """Check a decoded client frame; return it (with ``params`` normalised) or raise ``ProtocolError``."""
    if not isinstance(frame, dict):
        raise ProtocolError("bad_frame", "a frame must be a map with a type field `t`")
    _drop_nulls(frame)
    frame_id = frame.get("id")
    if frame_id is not None:
        _checked("id", frame_id, _ID, None)
    kind = frame.get("t")
    if not isinstance(kind, str):
        raise ProtocolError("bad_field", "t (the frame type) must be a string", frame_id=frame_id)
    spec = CLIENT_FRAMES.get(kind)
    if spec is None:
        raise ProtocolError("unknown_type", f"unknown frame type {kind[:40]!r}", frame_id=frame_id)
    for field, (types, required) in spec.items():
        if field not in frame:
            if required:
                raise ProtocolError("bad_field", f"{kind}.{field} is required", frame_id=frame_id)
            continue
        _checked(f"{kind}.{field}", frame[field], types, frame_id)
    if "params" in frame:
        if "params" not in spec:  # a key this frame type does not have: ignored, like any unknown key
            del frame["params"]
        else:
            frame["params"] = validate_params(frame["params"], frame_id=frame_id)
    _check_story(kind, frame, frame_id)
    return frame


# --- server frames ------------------------------------------------------------------------------------------


#: ``welcome.limits`` defaults of the bad-frame budget (PROTOCOL.md §1): a burst, then a steady rate per second.
BAD_FRAMES_BURST: Final = 32
BAD_FRAMES_PER_S: Final = 1.0
#: The keys of ``welcome.limits`` in v1 (PROTOCOL.md §2.2); all numbers, ``*_s`` in seconds and maybe fractional.
LIMIT_KEYS: Final = (
    "max_frame_bytes",
    "max_text",
    "send_queue",
    "frame_log",
    "frame_log_ttl_s",
    "resume_grace_s",
    "sessions_per_connection",
    "bad_frames_burst",
    "bad_frames_per_s",
    "max_card_bytes",
)


def welcome(server: str, node: str, limits: Mapping[str, float], heartbeat_s: float, models: list[str]) -> Frame:
    """``limits``: the keys of ``LIMIT_KEYS``, as the server enforces them (``resume_grace_s`` keeps its
    fractions: do not round it)."""
    return {
        "t": "welcome",
        "v": VERSION,
        "server": server,
        "node": node,
        "limits": dict(limits),
        "hb": heartbeat_s,
        "models": models,
    }


def error(
    code: str, message: str, *, frame_id: Any = None, sid: str | None = None, retry_after: float | None = None
) -> Frame:
    f: Frame = {"t": "error", "code": code, "msg": message}
    if frame_id is not None:
        f["id"] = frame_id
    if sid is not None:
        f["sid"] = sid
    if retry_after is not None:
        f["retry_after"] = retry_after
    return f


def pong(frame_id: Any = None, ts: float | None = None) -> Frame:
    f: Frame = {"t": "pong"}
    if frame_id is not None:
        f["id"] = frame_id
    if ts is not None:
        f["ts"] = ts
    return f


def turn_start(sid: str, seq: int, tid: int, kind: TurnKind, parent: int) -> Frame:
    return {"t": "turn.start", "sid": sid, "seq": seq, "tid": tid, "kind": kind, "parent": parent}


def delta(sid: str, seq: int, tid: int, text: str) -> Frame:
    return {"t": "delta", "sid": sid, "seq": seq, "tid": tid, "x": text}


def turn_end(
    sid: str,
    seq: int,
    tid: int,
    reason: FinishReason,
    usage: Mapping[str, int],
    timings: Mapping[str, float | None],
    cache: Literal["hit", "miss"] = "miss",
    *,
    xlen: int | None = None,
    xcrc: int | None = None,
    error: str | None = None,
    code: str | None = None,
    parsed: bool | None = None,
    valid: bool | None = None,
    path: str | None = None,
    lore: list[int | str] | None = None,
) -> Frame:
    """The end of a turn. ``xlen``/``xcrc``: the UTF-8 length and CRC-32 of the turn's text, all its deltas
    (``rtprotocol.text_check``); ``error`` (a message) and ``code`` (one of ``TURN_ERROR_CODES``) go with
    reason ``error``; ``parsed``, ``valid`` and ``path`` with a turn that had a schema; ``lore`` with a card
    session's turn (the ids of the book's entries its prompt carried). Keys left as None are not sent."""
    assert code is None or code in TURN_ERROR_CODES, code
    f: Frame = {
        "t": "turn.end",
        "sid": sid,
        "seq": seq,
        "tid": tid,
        "reason": reason,
        "usage": dict(usage),
        "timings": dict(timings),
        "cache": cache,
    }
    extra = (("xlen", xlen), ("xcrc", xcrc), ("error", error), ("code", code), ("parsed", parsed), ("valid", valid))
    for key, value in (*extra, ("path", path), ("lore", lore)):
        if value is not None:
            f[key] = value
    return f

"""Whatever fails in a turn ends it once, cleanly: one ``turn.end{reason: error}`` with a stable code and a
message that says what to do (never the exception's text), the traceback in the log, and a session, admission
place and engine that take the next turn. A failure is injected at each stage: the engine at the start,
mid-stream and at the end, a filter, and the store."""

from __future__ import annotations

import errno
import urllib.error
from collections.abc import AsyncIterator

import pytest

from rtserver.engine.base import Event, Finish, Request, Token
from rtserver.engine.scripted import SteppedEngine

from ..helpers import Raw, http_get

SECRET = "secret-internal-detail-0xdeadbeef"


class Faulty(SteppedEngine):
    """Fails as the user's line says: ``fail:start``, ``fail:mid``, ``fail:end`` raise; ``fail:finish`` ends the
    turn with the engine's own error (llama.cpp's words)."""

    async def generate(self, request: Request) -> AsyncIterator[Event]:
        line = request.messages[-1].content
        if line == "fail:start":
            raise RuntimeError(SECRET)
        n = 0
        async for event in super().generate(request):
            if isinstance(event, Token):
                n += 1
                if line == "fail:mid" and n == 3:
                    raise RuntimeError(SECRET)
            elif line == "fail:end":
                raise RuntimeError(SECRET)
            elif line == "fail:finish":
                yield Finish("error", error=f"llama_decode returned -3 ({SECRET})")
                return
            yield event


async def one_turn(r: Raw, text: str) -> tuple[dict, list[dict]]:
    await r.send({"t": "say", "text": text})
    end, seen = await r.until("turn.end")
    return end, seen


@pytest.mark.parametrize(
    ("line", "code", "deltas"),
    [
        ("fail:start", "internal", 0),
        ("fail:mid", "internal", 2),
        ("fail:end", "internal", 15),
        ("fail:finish", "engine_error", 15),
    ],
)
async def test_an_engine_failure_at_any_stage_ends_the_turn_once_and_the_next_works(serve, line, code, deltas):
    srv = await serve(engine=Faulty(), slots=1, max_queued_turns=0)
    srv.engine.run_freely()
    r = await Raw.connect(srv.url)
    await r.open()
    end, seen = await one_turn(r, line)
    assert [f["t"] for f in seen].count("turn.end") == 1 and seen[0]["t"] == "turn.start"
    assert sum(f["t"] == "delta" for f in seen) == deltas
    assert (end["reason"], end["code"]) == ("error", code)
    assert SECRET not in end["error"] and "retry" in end["error"]
    failed = [e for e in srv.logs.events if e.get("event") in ("turn_failed", "turn_engine_error")]
    assert failed and failed[-1]["sid"] == end["sid"] and failed[-1]["tid"] == end["tid"]
    if code == "internal":
        assert failed[-1].get("exc_info") is True  # the traceback goes to the log
    # The session, the only admission place (max_queued_turns=0 would refuse a leaked one) and the engine are free.
    again, _ = await one_turn(r, "hello")
    assert again["reason"] == "stop" and again["tid"] == end["tid"] + 1
    # Only store_failed leaves a turn out of the history: this one is there, with the text it got to.
    await r.send({"t": "session.open", "id": "snap", "sid": end["sid"]})
    snap, _ = await r.until("session")
    failed_turn = snap["snap"]["turns"][0]
    assert (failed_turn["tid"], failed_turn["reason"]) == (end["tid"], "error")
    assert len(failed_turn["reply"].encode()) == end["xlen"]
    await r.close()


async def test_a_filter_that_raises_ends_the_turn_once(serve, monkeypatch):
    srv = await serve(slots=1, max_queued_turns=0)
    srv.engine.run_freely()

    def broken(*a, **k):
        raise ValueError(SECRET)

    monkeypatch.setattr(srv.server.metrics, "turn_done", broken)  # the metrics filter fails at the turn's end
    r = await Raw.connect(srv.url)
    await r.open()
    end, seen = await one_turn(r, "hi")
    assert (end["reason"], end["code"]) == ("error", "internal") and SECRET not in end["error"]
    assert [f["t"] for f in seen].count("turn.end") == 1
    monkeypatch.undo()
    again, _ = await one_turn(r, "hi again")
    assert again["reason"] == "stop"
    await r.close()


async def test_a_turn_the_store_cannot_write_is_not_in_the_history_and_the_node_says_degraded(serve, monkeypatch):
    srv = await serve(slots=1)
    srv.engine.run_freely()
    writer = srv.server.store.writer
    real = writer._append
    monkeypatch.setattr(writer, "_append", lambda path, chunks, sync: OSError(errno.ENOSPC, "No space left on device"))
    r = await Raw.connect(srv.url)
    await r.send({"t": "session.open", "id": 1})
    refused, _ = await r.until("error")  # a session that cannot be stored is not opened
    assert (refused["code"], refused["id"]) == ("store_failed", 1)
    monkeypatch.setattr(writer, "_append", real)
    s = await r.open()
    first, _ = await one_turn(r, "kept")
    monkeypatch.setattr(writer, "_append", lambda path, chunks, sync: OSError(errno.ENOSPC, "No space left on device"))
    lost, seen = await one_turn(r, "not kept")
    assert (lost["reason"], lost["code"]) == ("error", "store_failed") and "not in the history" in lost["error"]
    assert not any(f["t"] == "turn.end" and f.get("reason") == "stop" for f in seen)
    with pytest.raises(urllib.error.HTTPError) as info:
        await http_get(srv.http + "/readyz")
    with info.value:  # its response holds the socket
        assert info.value.code == 503 and info.value.read().startswith(b"degraded")
    monkeypatch.setattr(writer, "_append", real)
    back, _ = await one_turn(r, "kept again")
    assert back["reason"] == "stop" and back["tid"] == lost["tid"] + 1  # the lost turn's id is not given again
    assert (await http_get(srv.http + "/readyz")).startswith(b"ready")
    await r.send({"t": "session.open", "id": 9, "sid": s["sid"]})
    snap, _ = await r.until("session")
    assert [t["user"] for t in snap["snap"]["turns"]] == ["kept", "kept again"]
    assert first["tid"] == 1
    await r.close()

"""The client checks each turn's assembled text against turn.end's xlen/xcrc, fed frames without a socket."""

import pytest
from rtclient import Client, TextMismatch
from rtclient.turn import Turn
from rtprotocol import text_check

SID = "q1W2e3R4t5Y6u7I8o9P0aA"


def _session_frame(seq=0, **extra):
    state = {"model": "default", "persona": None, "params": {}, "head": 0, "turns": 0, "running": None}
    return {"t": "session", "sid": SID, "seq": seq, "ep": "e1", "state": state, **extra}


def _client_with_turn(fid=7):
    """A client holding one session with a say in flight (frame id ``fid``), as after Session.say sent it."""
    from rtclient.session import Session

    client = Client("ws://unused/")
    session = client.sessions[SID] = Session(client, _session_frame())
    turn = session.pending[fid] = Turn("say", {"t": "say", "id": fid, "sid": SID, "text": "Hi"})
    return client, session, turn


def _stream(client, pieces, end_extra, tid=1):
    client._on_frame({"t": "turn.start", "sid": SID, "seq": 1, "tid": tid, "kind": "say", "parent": 0, "id": 7})
    for i, x in enumerate(pieces):
        client._on_frame({"t": "delta", "sid": SID, "seq": 2 + i, "tid": tid, "x": x})
    end = {"t": "turn.end", "sid": SID, "seq": 2 + len(pieces), "tid": tid, "reason": "stop", "cache": "miss"}
    client._on_frame({**end, "usage": {"prompt": 3, "reused": 0, "completion": 2}, **end_extra})


def _check(text):
    xlen, xcrc = text_check(text)
    return {"xlen": xlen, "xcrc": xcrc}


async def test_a_matching_turn_ends_normally():
    client, _, turn = _client_with_turn()
    _stream(client, [" Hmph", " café ☕"], _check(" Hmph café ☕"))
    result = await turn.result()
    assert result.text == " Hmph café ☕" and result.reason == "stop"
    assert [p async for p in turn] == [" Hmph", " café ☕"]


async def test_a_mismatch_raises_text_mismatch_from_result_and_iteration():
    client, _, turn = _client_with_turn()
    _stream(client, [" Hmph", " cafe"], _check(" Hmph café"))  # one byte short, as a mangled piece would be
    with pytest.raises(TextMismatch) as info:
        await turn.result()
    assert info.value.result.text == " Hmph cafe"
    assert info.value.result.usage["completion"] == 2  # the server's figures still reach the caller
    assert "bytes" in info.value.detail
    with pytest.raises(TextMismatch):
        async for _ in turn:
            pass


async def test_same_length_different_text_is_caught_by_the_crc():
    client, _, turn = _client_with_turn()
    _stream(client, ["abc"], _check("abd"))
    with pytest.raises(TextMismatch) as info:
        await turn.result()
    assert "CRC-32" in info.value.detail


async def test_a_server_without_xlen_is_not_checked():
    client, _, turn = _client_with_turn()
    _stream(client, ["anything"], {})
    assert (await turn.result()).text == "anything"


async def test_the_error_code_reaches_the_result():
    client, _, turn = _client_with_turn()
    _stream(client, [" Hmph"], {**_check(" Hmph"), "reason": "error", "error": "not stored", "code": "store_failed"})
    result = await turn.result()
    assert (result.reason, result.code, result.error) == ("error", "store_failed", "not stored")


async def test_a_turn_caught_up_from_a_snapshot_checks_out():
    """Resumed without recovery mid-turn: the text so far comes from snap.running, the rest live."""
    client, session, turn = _client_with_turn()
    client._on_frame({"t": "turn.start", "sid": SID, "seq": 1, "tid": 1, "kind": "say", "parent": 0, "id": 7})
    client._on_frame({"t": "delta", "sid": SID, "seq": 2, "tid": 1, "x": "Hel"})
    running = {"tid": 1, "kind": "say", "parent": 0, "user": "Hi", "text": "Hello, tr"}
    session._on_resumed(
        _session_frame(seq=1, recovered=False, why="epoch_changed", snap={"turns": [], "running": running})
    )
    client._on_frame({"t": "delta", "sid": SID, "seq": 2, "tid": 1, "x": "aveller."})
    end = {"t": "turn.end", "sid": SID, "seq": 3, "tid": 1, "reason": "stop", **_check("Hello, traveller.")}
    client._on_frame(end)
    assert (await turn.result()).text == "Hello, traveller."
    assert [p async for p in turn] == ["Hel", "lo, tr", "aveller."]


async def test_refresh_reads_the_snapshot_on_the_same_connection():
    client, session, _ = _client_with_turn()
    sent = []

    async def send(frame, fid):
        sent.append(frame)
        snap = {"turns": [{"tid": 1, "reply": "Hmph."}], "running": None}
        client._on_frame({**_session_frame(seq=5, snap=snap), "id": fid})

    client._send = send
    snap = await session.refresh()
    assert sent[0]["t"] == "session.open" and sent[0]["sid"] == SID
    assert snap["turns"][0]["reply"] == "Hmph."
    assert session.tracker.last_seq == 0  # frames keep their order: the reply does not move the tracker

"""The session-protocol core without sockets: what each frame asks for, and the rules it keeps on its own."""

import pytest
from rtprotocol import ProtocolError
from rtprotocol import core as C


def ready(max_sessions: int = 2) -> C.ConnectionCore:
    core = C.ConnectionCore(max_sessions)
    assert isinstance(core.receive({"t": "hello", "id": 1}), C.Hello)
    return core


def refused(core: C.ConnectionCore, frame: dict) -> str:
    with pytest.raises(ProtocolError) as info:
        core.receive(frame)
    return info.value.code


def test_nothing_but_hello_and_ping_before_hello():
    core = C.ConnectionCore(4)
    assert core.receive({"t": "ping", "id": 7, "ts": 1.5}) == C.Reply(7, {"t": "pong", "id": 7, "ts": 1.5})
    assert refused(core, {"t": "say", "text": "hi"}) == "not_ready"
    assert isinstance(core.receive({"t": "hello"}), C.Hello)
    assert refused(core, {"t": "say", "text": "hi"}) == "no_session"  # ready now, but no session yet


def test_a_frame_without_sid_means_the_session_last_attached():
    core = ready()
    assert core.receive({"t": "session.open", "id": 2, "persona": "P"}) == C.Open(2, "P", {}, None, False)
    core.attached_to("a")
    core.attached_to("b")
    turn = core.receive({"t": "say", "text": "hi", "params": {"seed": 3}})
    assert turn == C.Turn(None, "b", False, "say", "hi", {"seed": 3})
    assert core.receive({"t": "cancel", "sid": "a"}) == C.Cancel(None, "a", False)
    core.detached("b")
    assert refused(core, {"t": "regenerate"}) == "no_session"


def test_naming_a_session_not_attached_asks_for_an_attach_within_the_cap():
    core = ready(max_sessions=1)
    assert core.receive({"t": "session.update", "sid": "x", "persona": "Q"}) == C.Update(None, "x", True, "Q", {})
    core.attached_to("x")
    assert refused(core, {"t": "rollback", "sid": "y", "tid": 0}) == "too_many_sessions"
    assert refused(core, {"t": "session.open"}) == "too_many_sessions"
    assert core.receive({"t": "session.resume", "sid": "x", "ep": "e", "last_seq": 4}) == C.Resume(None, "x", "e", 4)

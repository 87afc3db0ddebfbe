"""The reply cache's key, its choice of turns, and the in-process LRU (the clock injected)."""

from __future__ import annotations

import dataclasses

from rtserver.cache import LocalCache, Reply, cacheable, turn_key
from rtserver.engine.base import Message, Request


def request(**kw: object) -> Request:
    base = Request("s1", [Message("system", "You are Bram."), Message("user", "hi")], temperature=0.0)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_the_key_changes_with_everything_that_changes_the_reply():
    base = turn_key("m", request())
    variants = [
        turn_key("other-model", request()),
        turn_key("m", request(messages=[Message("system", "You are Ada."), Message("user", "hi")])),
        turn_key("m", request(messages=[Message("system", "You are Bram."), Message("user", "hello")])),
        turn_key("m", request(messages=[Message("user", "hi")])),
        turn_key("m", request(continue_last=True)),
        turn_key("m", request(temperature=0.5)),
        turn_key("m", request(top_p=0.5)),
        turn_key("m", request(seed=1)),
        turn_key("m", request(max_tokens=3)),
        turn_key("m", request(stop=["."])),
        turn_key("m", request(grammar='root ::= "a"')),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_the_key_leaves_out_what_does_not_change_the_reply():
    assert turn_key("m", request()) == turn_key("m", request(key="another-session", priority=5))
    assert turn_key("m", request(temperature=0)) == turn_key("m", request(temperature=0.0))


def test_only_deterministic_turns_unless_opted_in():
    assert cacheable("say", request(temperature=0.0), None)
    assert cacheable("say", request(temperature=0.8, seed=3), None)
    assert cacheable("continue", request(temperature=0.0), None)
    assert not cacheable("say", request(temperature=0.8), None)
    assert cacheable("say", request(temperature=0.8), True)  # the session opted in
    assert not cacheable("say", request(temperature=0.0), False)  # params.cache: false bypasses
    assert not cacheable("regenerate", request(temperature=0.0), True)  # an alternative must be new


def test_a_reply_round_trips_and_foreign_bytes_are_a_miss():
    reply = Reply(("You", " said", " hi."), "stop")
    assert Reply.decode(reply.encode()) == reply
    assert Reply.decode(b"\x93\x63\x90\xa4stop") is None  # another key version
    assert Reply.decode(b"not msgpack at all") is None
    assert Reply.decode(Reply(("x",), "cancelled").encode()) is None  # never a partial reply


def test_lru_keeps_the_recent_ones_and_expires_them():
    now = [0.0]
    lru = LocalCache(entries=2, ttl=10.0, clock=lambda: now[0])
    a, b, c = (Reply((t,), "stop") for t in "abc")
    lru.put("a", a)
    lru.put("b", b)
    assert lru.get("a") == a  # a is now the most recent
    lru.put("c", c)
    assert lru.get("b") is None and lru.get("a") == a and lru.get("c") == c
    now[0] = 10.0
    assert lru.get("a") is None and len(lru) == 1


def test_no_entries_is_off():
    lru = LocalCache(entries=0, ttl=10.0)
    lru.put("a", Reply(("a",), "stop"))
    assert lru.get("a") is None

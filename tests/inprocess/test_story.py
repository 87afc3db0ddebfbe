"""Card sessions end to end in-process: the real Server with a stepped engine that keeps every request it got, so
a test reads the exact messages a turn's prompt was made of."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from rtclient import Client, RtClientError
from websockets.exceptions import ConnectionClosed

from rtserver.engine.base import Event, Request
from rtserver.engine.scripted import SteppedEngine

from ..helpers import Raw

CARD = Path(__file__).parent.parent / "data" / "mira.card.json"
NPC_SCHEMA = {
    "type": "object",
    "properties": {
        "line": {"type": "string"},
        "emotion": {"enum": ["calm", "happy"]},
        "choices": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["line", "emotion", "choices"],
}


class Keeping(SteppedEngine):
    """Keeps each request; a turn with a grammar gets ``self.json`` as its reply, in pieces."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []
        self.json = '{"line": "Hm.", "emotion": "calm", "choices": []}'
        self.run_freely()

    def generate(self, request: Request) -> AsyncIterator[Event]:
        self.requests.append(request)
        return super().generate(request)

    def _script(self, request: Request) -> Iterator[str]:
        if request.grammar is None:
            yield from super()._script(request)
            return
        yield from (self.json[i : i + 8] for i in range(0, len(self.json), 8))

    def prompt(self, i: int = -1) -> list[tuple[str, str]]:
        return [(m.role, m.content) for m in self.requests[i].messages]


def mira() -> dict:
    return json.loads(CARD.read_text())


async def test_greetings_open_the_story_as_alternatives(serve):
    srv = await serve(engine=Keeping())
    async with Client(srv.url) as c:
        s = await c.open_session(card=CARD, user="Ada")
        turns = s.snapshot["turns"]
        assert [(t["tid"], t["kind"], t["alts"]) for t in turns] == [(1, "greeting", [1, 2, 3])]
        assert turns[0]["reply"] == "*Mira opens the door.* In with you, Ada, before the sea takes you."
        assert s.state["story"]["card"]["name"] == "Mira" and s.state["story"]["user"] == "Ada"
        await s.rollback(3)  # the second alternate greeting
        r = await (await s.say("Hello")).result()
        assert r.reason == "stop" and r.lore == [4]  # only the constant entry: no key in the window
        assert srv.engine.prompt()[1:3] == [
            ("assistant", "Shut the door, the wind is eating my fire."),
            ("user", "Hello"),
        ]
        with pytest.raises(RtClientError) as info:
            await s.rollback(1) or await s.regenerate()
        assert info.value.code == "nothing_to_regenerate"


async def test_story_vars_set_and_unset_mid_story_reach_the_next_prompt(serve):
    srv = await serve(engine=Keeping())
    async with Client(srv.url) as c:
        s = await c.open_session(card=mira(), user="Ada", vars={"errand": "find the key"})
        await (await s.say("Hi")).result()
        assert ("system", "[Story state]\nerrand: find the key") in srv.engine.prompt()
        await s.update(vars={"coins": 3, "errand": None}, unset=["errand"])
        assert s.state["story"]["vars"] == {"coins": 3}
        await (await s.say("And now?")).result()
        prompt = srv.engine.prompt()
        assert ("system", "[Story state]\ncoins: 3") in prompt
        assert not any("errand" in text for _, text in prompt)
        # The block sits after the turn that was the head when the variables changed (tid 4), before the new line.
        assert prompt.index(("system", "[Story state]\ncoins: 3")) == prompt.index(("user", "And now?")) - 1
        await s.update(unset=["coins"])
        await (await s.say("Empty?")).result()
        assert not any("[Story state]" in text for _, text in srv.engine.prompt())


async def test_the_authors_note_goes_at_its_depth(serve):
    srv = await serve(engine=Keeping())
    async with Client(srv.url) as c:
        card = mira()
        del card["data"]["character_book"]  # (the scripted replies name things the book has entries for)
        s = await c.open_session(card=card, note="It is raining.", note_depth=0)
        await (await s.say("Hi")).result()
        assert srv.engine.prompt()[-2:] == [
            ("system", "[Author's note: It is raining.]"),
            ("system", "Keep replies under three sentences."),
        ]
        await s.update(note_depth=2)
        await (await s.say("Again")).result()
        roles = [role for role, _ in srv.engine.prompt()]
        note = srv.engine.prompt().index(("system", "[Author's note: It is raining.]"))
        assert roles[note + 1 :] == ["assistant", "user", "system"]  # two messages below it, then the card's PHI
        await s.update(note="")
        await (await s.say("Dry?")).result()
        assert not any("Author's note" in text for _, text in srv.engine.prompt())


async def test_story_state_survives_a_restart(serve):
    srv = await serve(engine=Keeping())
    async with Client(srv.url) as c:
        s = await c.open_session(card=mira(), user="Ada")
        await s.update(vars={"mood": "wary"}, note="Storm.")
        sid = s.sid
    await srv.stop()
    again = await serve(engine=Keeping())
    async with Client(again.url) as c:
        s = await c.attach(sid)
        assert s.state["story"]["vars"] == {"mood": "wary"}
        assert s.state["story"]["note"] == {"text": "Storm.", "depth": 4}
        await (await s.say("Still here?")).result()
        assert ("system", "[Story state]\nmood: wary") in again.engine.prompt()
        assert ("assistant", "*Mira opens the door.* In with you, Ada, before the sea takes you.") in (
            again.engine.prompt()
        )


async def test_edit_makes_a_sibling_and_moves_the_head(serve):
    srv = await serve(engine=Keeping())
    async with Client(srv.url) as c:
        s = await c.open_session(persona="P")
        first = await (await s.say("Hi")).result()
        new = await s.edit(first.tid, reply="Edited reply.")
        assert new != first.tid and s.state["head"] == new
        snap = await s.refresh()
        assert [(t["tid"], t["reply"], t.get("edited"), t["alts"]) for t in snap["turns"]] == [
            (new, "Edited reply.", first.tid, [first.tid, new])
        ]
        await (await s.say("Next")).result()
        assert srv.engine.prompt()[-2:] == [("assistant", "Edited reply."), ("user", "Next")]
        with pytest.raises(RtClientError) as info:
            await s.edit(999, reply="x")
        assert info.value.code == "unknown_turn"


async def test_two_regenerates_without_seeds_differ_even_with_a_session_seed(serve):
    srv = await serve(engine=Keeping())
    async with Client(srv.url) as c:
        s = await c.open_session(params={"seed": 7})
        first = await (await s.say("Tell me a story")).result()
        a = await (await s.regenerate()).result()
        b = await (await s.regenerate()).result()
        same = await (await s.regenerate(params={"seed": 7})).result()
        snap = await s.refresh()
    assert len({first.text, a.text, b.text}) == 3
    assert same.text == first.text  # the session's seed given again: that reply again
    assert snap["turns"][-1]["alts"] == [first.tid, a.tid, b.tid, same.tid]


async def test_a_reply_that_is_json_but_breaks_the_schema_is_reported_with_its_path(serve):
    srv = await serve(engine=Keeping())
    async with Client(srv.url) as c:
        s = await c.open_session()
        ok = await (await s.say("Hi", schema=NPC_SCHEMA)).result()
        assert (ok.parsed, ok.valid, ok.path) == (True, True, None)
        srv.engine.json = '{"line": "Grr!", "emotion": "angry", "choices": []}'
        bad = await (await s.say("Hi", schema=NPC_SCHEMA)).result()
        assert (bad.parsed, bad.valid, bad.path) == (True, False, "/emotion")
        srv.engine.json = '{"line": "Grr!", "emot'
        cut = await (await s.say("Hi", schema=NPC_SCHEMA)).result()
        assert (cut.parsed, cut.valid, cut.path) == (False, False, None)
        plain = await (await s.say("no schema")).result()
        assert (plain.parsed, plain.valid, plain.path) == (None, None, None)
        with pytest.raises(RtClientError) as info:
            await s.say("Hi", schema={"type": "object", "properties": {"x": {"type": "thing"}}})
        assert info.value.code == "bad_field" and "not a JSON schema" in info.value.message


async def test_impersonate_suggests_a_line_without_adding_it(serve):
    srv = await serve(engine=Keeping())
    async with Client(srv.url) as c:
        s = await c.open_session(card=mira(), user="Ada")
        turn = await s.impersonate()
        r = await turn.result()
        assert turn.kind == "impersonate" and r.reason == "stop" and r.text
        assert srv.engine.prompt()[-1] == (
            "system",
            "[Write Ada's next line in the story, as Ada would say it. Write only that line.]",
        )
        snap = await s.refresh()
        assert [t["kind"] for t in snap["turns"]] == ["greeting"] and s.state["head"] == 1


async def test_lore_activated_by_keys_is_reported_and_in_the_prompt(serve):
    srv = await serve(engine=Keeping())
    async with Client(srv.url) as c:
        s = await c.open_session(card=mira(), user="Ada")
        r = await (await s.say("Is the lamp lit?")).result()
        assert r.lore == [4, 1, 6]
        prompt = srv.engine.prompt()
        assert prompt[-3] == (
            "system",
            "[Lore]\nThe lamp burns whale oil and must be trimmed at midnight.\n\nWhalers come each spring.",
        )
        assert "Gull Rock has no trees." in prompt[0][1]  # the constant entry, in the card's text
        assert not any("NEVER-INSERTED" in text or "SECRET-CREATOR-NOTE" in text for _, text in prompt)


async def test_samplers_reach_the_engine_and_bad_values_are_refused(serve):
    srv = await serve(engine=Keeping())
    r = await Raw.connect(srv.url)
    await r.open(params={"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1, "repeat_last_n": 128})
    await r.send({"t": "say", "text": "x", "params": {"presence_penalty": 0.5, "frequency_penalty": -0.5}})
    await r.until("turn.end")
    q = srv.engine.requests[-1]
    assert (q.top_k, q.min_p, q.repeat_penalty, q.repeat_last_n) == (40, 0.05, 1.1, 128)
    assert (q.presence_penalty, q.frequency_penalty) == (0.5, -0.5)
    for bad in ({"top_k": -1}, {"min_p": 2}, {"repeat_penalty": 0}, {"repeat_last_n": -2}, {"presence_penalty": 3}):
        await r.send({"t": "say", "id": "b", "text": "x", "params": bad})
        err, _ = await r.until("error")
        assert err["code"] == "bad_field" and next(iter(bad)) in err["msg"]


async def test_bad_cards_and_story_fields_without_a_card_are_refused(serve):
    srv = await serve(engine=Keeping())
    r = await Raw.connect(srv.url)
    await r.send({"t": "session.open", "id": 1, "card": {"spec": "chara_card_v2", "data": {"name": ""}}})
    err, _ = await r.until("error")
    assert (err["code"], err["id"]) == ("bad_field", 1) and "name" in err["msg"]
    await r.send({"t": "session.open", "id": 2, "vars": {"a": 1}})
    err, _ = await r.until("error")
    assert err["code"] == "bad_field" and "card" in err["msg"]
    await r.open()
    await r.send({"t": "session.update", "id": 3, "vars": {"a": 1}})
    err, _ = await r.until("error")
    assert err["code"] == "bad_field" and "card session" in err["msg"]


async def test_a_card_too_large_for_a_frame_is_put_once_and_named_by_its_cid(serve, tmp_path):
    big = mira()
    big["data"]["character_book"]["token_budget"] = 100_000
    entries = big["data"]["character_book"]["entries"]
    entries += [{"id": 100 + i, "keys": [f"word{i}"], "content": "x" * 1000, "enabled": True} for i in range(100)]
    srv = await serve(engine=Keeping(), max_frame_bytes=65536)
    async with Client(srv.url) as c:
        assert c.welcome["limits"]["max_card_bytes"] == 4 * 1024 * 1024
        with pytest.raises(RtClientError) as info:
            await c.open_session(card={"cid": "0123456789abcdef"})
        assert info.value.code == "bad_field" and "card.put" in info.value.message
        cid = await c.put_card(big)
        assert cid == await c.put_card(big)  # the same card, the same cid
        s = await c.open_session(card={"cid": cid}, user="Ada")
        assert s.snapshot["turns"][0]["kind"] == "greeting" and s.state["story"]["card"]["digest"] == cid
        r = await (await s.say("Tell me about word42.")).result()
        assert 142 in r.lore
    await srv.stop()
    again = await serve(engine=Keeping(), max_frame_bytes=65536)
    async with Client(again.url) as c:
        assert (await c.open_session(card={"cid": cid})).state["story"]["card"]["name"] == "Mira"
    raw = await Raw.connect(again.url)
    await raw.send({"t": "session.open", "persona": "x" * 70000})  # not a card.put: over max_frame_bytes
    with pytest.raises(ConnectionClosed) as closed:
        await raw.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

"""A card session's story state and edited turns in the journal: written, updated, compacted, read back."""

from __future__ import annotations

import json
from pathlib import Path

from rtserver.sessions import records as R
from rtserver.sessions.history import TurnNode
from rtserver.sessions.journal import scan
from rtserver.sessions.local import LocalStore
from rtserver.sessions.store import FrameLogState, SessionData
from rtserver.story.state import Story

CARD = json.loads((Path(__file__).parent.parent / "data" / "mira.card.json").read_text())


async def test_story_state_and_edits_come_back_from_the_journal_and_its_compaction(tmp_path):
    store = LocalStore(tmp_path, "n1")
    await store.open()
    gen = await store.acquire("s")
    story = Story(CARD, user="Ada", vars={"coins": 1})
    data = SessionData("s", None, {}, "default", story=story.to_dict())
    reserved = await store.create(data, gen)
    greeting, edited = TurnNode(1, 0, "greeting", None, "Hi.", "stop"), TurnNode(2, 0, "greeting", None, "Yo.", "stop")
    edited.edited = 1
    for node in (greeting, edited):
        await store.save_turn("s", gen, node)
        data.history.commit(node)
    later = Story(CARD, user="Ada", vars={"coins": 2, "mood": "wary"}, vars_at=2, note="Rain.", note_depth=1)
    await store.update_story("s", gen, later.to_dict())
    data.story = later.to_dict()
    await store.close()
    found = await LocalStore(tmp_path, "n1").load("s")
    assert found is not None and found.data.story == later.to_dict()
    assert found.data.history.nodes[2].edited == 1 and found.data.history.nodes[2].public()["edited"] == 1
    assert "edited" not in found.data.history.nodes[1].public()
    # Compaction writes the whole state as an open record: the story is in it.
    whole = R.compacted(found.data, reserved, FrameLogState("e", 0, [], 0.0))
    again = R.rebuild("s", [r for _, r in scan(whole).records])
    assert again is not None and Story.from_dict(again.data.story or {}).to_dict() == later.to_dict()
    assert again.data.history.nodes[2].edited == 1


def test_a_session_without_a_card_writes_no_story():
    record = R.open_record(SessionData("x", "P", {}, "default"), 32)
    assert b"story" not in record

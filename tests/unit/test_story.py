"""Character cards, macros, the character book and the prompt a card session renders (rtserver/story)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from rtserver.engine.prompt import ChatTemplate
from rtserver.story.card import CardError, card_png, parse_card, png_chunk, read_card_bytes, read_card_file
from rtserver.story.lorebook import parse_book
from rtserver.story.macros import expand
from rtserver.story.render import render
from rtserver.story.state import Story

CARD = Path(__file__).parent.parent / "data" / "mira.card.json"


@dataclass
class Node:  # a history turn as render reads it
    tid: int
    kind: str
    user: str | None
    reply: str


def mira() -> dict:
    return json.loads(CARD.read_text())


def prompt(story: Story, path: list[Node], line: str | None, **kw) -> str:
    return ChatTemplate(None).render(render(story, path, line, **kw).messages)


GREETING = Node(1, "greeting", None, "*Mira opens the door.* In with you, Ada, before the sea takes you.")

EXPECTED = (
    "<|im_start|>system\n"
    "Be kind. Stay in character as Mira.\n\n"
    "Gull Rock has no trees.\n\n"
    "Mira keeps the lighthouse on Gull Rock. She knows every ship that passed in forty years.\n\n"
    "Mira's personality: dry, patient, fond of Ada\n\n"
    "Scenario: Ada rows out to the lighthouse in a storm.\n\n"
    "[Example dialogue]\nAda: Any ships tonight?\nMira: Only the ones that sank.<|im_end|>\n"
    "<|im_start|>assistant\n*Mira opens the door.* In with you, Ada, before the sea takes you.<|im_end|>\n"
    "<|im_start|>system\n[Lore]\nThe lamp burns whale oil and must be trimmed at midnight.\n\n"
    "Whalers come each spring.<|im_end|>\n"
    "<|im_start|>user\nIs the lamp lit?<|im_end|>\n"
    "<|im_start|>system\nKeep replies under three sentences.<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def test_a_v2_card_renders_this_exact_prompt():
    story = Story(mira(), user="Ada")
    assert prompt(story, [GREETING], "Is the lamp lit?", persona="Be kind.") == EXPECTED
    assert render(story, [GREETING], "Is the lamp lit?").lore == [4, 1, 6]  # constant, lamp, whale (recursion)


def test_the_same_card_from_a_png_gives_the_same_prompt(tmp_path):
    path = tmp_path / "mira.png"
    path.write_bytes(card_png(mira()))
    story = Story(read_card_file(path), user="Ada")
    assert prompt(story, [GREETING], "Is the lamp lit?", persona="Be kind.") == EXPECTED


def test_a_png_prefers_ccv3_and_refuses_a_damaged_chunk():
    v3 = {"spec": "chara_card_v3", "spec_version": "3.0", "data": {**mira()["data"], "name": "Mira3"}}
    data = card_png(mira(), v3=v3)
    assert parse_card(read_card_bytes(data)).name == "Mira3"
    broken = data.replace(b"IEND", b"IEN!")
    with pytest.raises(CardError, match="damaged"):
        read_card_bytes(broken)
    no_card = data[:8] + png_chunk(b"IHDR", b"\0" * 13) + png_chunk(b"IEND", b"")
    with pytest.raises(CardError, match="no chara"):
        read_card_bytes(no_card)


def test_unknown_fields_and_extensions_are_kept_untouched():
    raw = mira()
    raw["data"]["mystery_field"] = {"a": 1}
    card = parse_card(raw)
    assert card.raw["data"]["extensions"] == mira()["data"]["extensions"]
    assert card.raw["data"]["mystery_field"] == {"a": 1}
    assert Story.from_dict(Story(raw).to_dict()).card_raw == raw


def test_bad_cards_say_which_field():
    with pytest.raises(CardError, match="data.name"):
        parse_card({"spec": "chara_card_v2", "data": {"name": ""}})
    with pytest.raises(CardError, match="spec"):
        parse_card({"spec": "chara_card_v9", "data": {}})
    with pytest.raises(CardError, match="entries\\[0\\].position"):
        parse_card({"name": "x", "character_book": {"entries": [{"keys": ["a"], "content": "b", "position": "up"}]}})


def test_macros():
    assert expand("{{char}} greets {{ USER }}; <BOT> and <USER>", "Mira", "Ada") == "Mira greets Ada; Mira and Ada"
    assert expand("{{original}} More.", "M", "A", "Base.") == "Base. More."
    assert expand("{{unknown}} stays", "M", "A") == "{{unknown}} stays"


def test_creator_notes_are_in_no_prompt():
    story = Story(mira(), user="Ada", vars={"mood": "wary"}, note="Rain.")
    texts = [
        prompt(story, [GREETING], "hello"),
        prompt(story, [GREETING], None, impersonate=True),
        prompt(story, [GREETING], None, continue_last=True),
    ]
    assert all("SECRET-CREATOR-NOTE" not in t for t in texts)


def book(*entries: dict, **kw) -> object:
    return parse_book({"entries": list(entries), **kw})


def ids(b, *texts: str) -> list:
    return [e.id for e in b.activate(list(texts))]


def test_keys_case_whole_words_and_disabled_entries():
    b = book(
        {"id": "ring", "keys": ["ring"], "content": "r"},
        {"id": "Harbor", "keys": ["Harbor"], "case_sensitive": True, "content": "h"},
        {"id": "off", "keys": ["ring"], "content": "x", "enabled": False},
        {"id": "phrase", "keys": ["old mill"], "content": "m"},
    )
    assert ids(b, "a RING of iron") == ["ring"]
    assert ids(b, "bring it") == []  # a one-word key matches whole words only
    assert ids(b, "the harbor") == [] and ids(b, "the Harbor") == ["Harbor"]
    assert ids(b, "by the OLD MILLpond") == ["phrase"]


def test_selective_entries_need_their_secondary_keys_by_their_logic():
    def sel(logic: int) -> object:
        return book(
            {
                "id": logic,
                "keys": ["ship"],
                "secondary_keys": ["storm", "night"],
                "selective": True,
                "content": "c",
                "extensions": {"selectiveLogic": logic},
            }
        )

    assert ids(sel(0), "a ship") == [] and ids(sel(0), "a ship at night") == [0]  # AND ANY
    assert ids(sel(1), "ship, storm, night") == [] and ids(sel(1), "ship in a storm") == [1]  # NOT ALL
    assert ids(sel(2), "ship in a storm") == [] and ids(sel(2), "a ship") == [2]  # NOT ANY
    assert ids(sel(3), "ship in a storm") == [] and ids(sel(3), "ship, storm, night") == [3]  # AND ALL


def test_constant_entries_scan_depth_and_recursion():
    entries = (
        {"id": "c", "keys": [], "constant": True, "content": "always"},
        {"id": "a", "keys": ["apple"], "content": "the apple tree by the well"},
        {"id": "w", "keys": ["well"], "content": "the well is dry"},
    )
    flat, deep = book(*entries, scan_depth=1), book(*entries, scan_depth=1, recursive_scanning=True)
    assert ids(flat, "an apple", "nothing") == ["c"]  # apple is two messages back; the book scans one
    assert ids(flat, "nothing", "an apple") == ["c", "a"]
    assert ids(deep, "nothing", "an apple") == ["c", "a", "w"]  # the apple entry mentions the well


def test_the_token_budget_keeps_constants_then_priority():
    card = parse_card(mira())
    assert card.book is not None
    got = [e.id for e in card.book.activate(["the lamp and the gold"])]
    assert got == [4, 1, 6]  # gold (priority -5) no longer fits in 40 tokens; the rest in insertion order
    card.book.token_budget = 200
    assert [e.id for e in card.book.activate(["the lamp and the gold"])] == [4, 7, 1, 6]


def test_story_vars_sit_after_the_turn_they_changed_at_and_the_note_at_its_depth():
    path = [GREETING, Node(2, "say", "Hi", "Hello."), Node(3, "say", "And?", "Storm.")]
    story = Story(mira(), user="Ada", vars={"quest": "find the key", "coins": 3}, vars_at=2, note="Rain.", note_depth=1)
    roles = [(m.role, m.content.split("\n")[0]) for m in render(story, path, "Now?").messages]
    assert roles[1:] == [
        ("assistant", GREETING.reply),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("system", "[Story state]"),
        ("user", "And?"),
        ("assistant", "Storm."),
        ("system", "[Author's note: Rain.]"),
        ("user", "Now?"),
        ("system", "Keep replies under three sentences."),
    ]
    state = render(story, path, "Now?").messages[4].content
    assert state == "[Story state]\nquest: find the key\ncoins: 3"
    story.vars_at = 99  # a turn off the path (rolled back past): before the newest line
    assert [m.content.split("\n")[0] for m in render(story, path, "Now?").messages][-4:-2] == [
        "[Story state]",
        "[Author's note: Rain.]",
    ]
    story.note_depth = 0
    assert render(story, path, "Now?").messages[-2].content == "[Author's note: Rain.]"


def test_the_lore_block_stays_put_while_its_entries_do_not_change():
    story = Story(mira(), user="Ada")

    def lore_at(path: list[Node], line: str, seen: dict) -> int:
        msgs = render(story, path, line, seen=seen).messages
        return next(i for i, m in enumerate(msgs) if m.content.startswith("[Lore]"))

    seen: dict = {}
    t2 = Node(2, "say", "Is the lamp lit?", "It is.")
    t3 = Node(3, "say", "Trim the lamp.", "Done.")
    assert lore_at([GREETING], "Is the lamp lit?", seen) == 2  # new: before the newest line
    assert lore_at([GREETING, t2], "Trim the lamp.", seen) == 2  # the same entries: where it was
    assert lore_at([GREETING, t2, t3], "And the lamp?", seen) == 2
    moved = render(story, [GREETING, t2, t3], "Any gold?", seen=seen).messages  # gold joins: it moves down
    assert [m.content.split("\n")[0] for m in moved[-3:]] == ["[Lore]", "Any gold?", PHI]
    assert "Gold coins" in moved[-3].content and seen == {2: (0, 5), 3: (0, 5)}
    assert lore_at([GREETING, t2, t3], "And the lamp?", None) == 2  # the same without the cache


PHI = "Keep replies under three sentences."


def test_base64_card_in_png_round_trips_unicode():
    raw = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Émile ☂", "description": "ça va"}}
    assert read_card_bytes(card_png(raw)) == raw
    assert base64.b64encode(json.dumps(raw).encode()) in card_png(raw)

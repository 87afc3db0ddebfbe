"""Card sessions, the example game and the replay tool on the real engine (llama.cpp, the bundled model)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from rtclient import Client
from rtprotocol.recording import load

from rtserver.replay import run as R

from ..conftest import ROOT
from .test_model import engine_counter

pytestmark = pytest.mark.model
GAME = ROOT / "clients" / "examples" / "tavern" / "game.py"
CARD = ROOT / "tests" / "data" / "mira.card.json"


def game_module():
    spec = importlib.util.spec_from_file_location("tavern_game", GAME)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tavern_game"] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


async def test_the_example_game_plays_three_scripted_moves(start_server, bundled_model):
    srv = start_server("--slots", "4")
    game_mod = game_module()
    async with Client(srv.url) as c:
        game = game_mod.Game(c)
        await game.start()
        moves = [await game.move(npc, line) for npc, line in game_mod.SCRIPT]
        for npc in game.npcs.values():  # the game's state reached every NPC as story variables
            assert npc.state["story"]["vars"] == game.state.story_vars()
    assert [m["npc"] for m in moves] == ["bram", "bram", "sela"]
    for m in moves:
        assert set(m["reply"]) == {"line", "emotion", "choices", "action"}, m  # the grammar holds the shape
        assert isinstance(m["valid"], bool) and (m["valid"] or m["path"] is not None)
        assert m["state"]["gold"] <= 5 and m["event"]
    assert moves[0]["lore"] is not None and "token" in moves[1]["lore"]  # "gate token" in the line: its entry


async def record_story(url: str, path: Path) -> list[str]:
    async with Client(url, record=path) as c:
        s = await c.open_session(card=CARD, user="Ada", params={"seed": 3, "temperature": 0.8, "max_tokens": 40})
        texts = [(await (await s.say("Is the lamp lit tonight?")).result()).text]
        await s.update(vars={"coins": 2}, note="A storm is coming.")
        texts.append((await (await s.say("I brought oil for the lamp.")).result()).text)
        texts.append((await (await s.regenerate(params={"seed": 4})).result()).text)
    return texts


async def test_a_recorded_story_replays_identically_on_a_fresh_server(start_server, bundled_model, tmp_path):
    first = start_server("--slots", "2", data_dir=tmp_path / "a")
    rec = tmp_path / "story.jsonl"
    texts = await record_story(first.url, rec)
    assert all(texts) and texts[1] != texts[2]
    first.stop()
    fresh = start_server("--slots", "2", data_dir=tmp_path / "b")
    report = await R.run(load(rec), fresh.url, speed=0)
    assert (report.code, report.turns, report.compared, report.differ) == (R.OK, 3, 3, [])


async def test_sessions_of_one_card_share_its_prefilled_text(start_server, bundled_model):
    srv = start_server("--slots", "4")
    async with Client(srv.url) as c:
        sessions = [await c.open_session(card=CARD, user="Ada", params={"max_tokens": 4}) for _ in range(4)]
        turns = await asyncio.gather(*(s.say("Hello there.") for s in sessions))
        results = [await t.result() for t in turns]
    shared = await engine_counter(srv, "shared_prefix_tokens")
    prompt = results[0].usage["prompt"]
    assert shared >= 3 * (prompt - 20)  # three of the four copied the card's KV instead of computing it
    assert await engine_counter(srv, "prefilled_tokens") < 2 * prompt
    assert json.dumps(results[0].usage)


async def test_storyteller_samplers_run_in_llama_cpp(start_server, bundled_model):
    srv = start_server("--slots", "4")
    line, persona = "Tell me about the old tower.", "You are Mira, a herbalist."
    async with Client(srv.url) as c:

        async def reply(**params: object) -> str:
            s = await c.open_session(persona=persona, params={"max_tokens": 24, **params})
            return (await (await s.say(line)).result()).text

        greedy = await reply(temperature=0)
        assert await reply(temperature=1.0, seed=5, top_k=1) == greedy  # only the likeliest token is left
        assert await reply(temperature=1.0, seed=5, min_p=1.0) == greedy
        penalised = await reply(temperature=0, repeat_penalty=1.5, repeat_last_n=-1, frequency_penalty=0.5)
        assert penalised and penalised == await reply(temperature=0, repeat_penalty=1.5, repeat_last_n=-1,
                                                      frequency_penalty=0.5)  # fmt: skip


def test_a_cards_text_is_tokenized_once_for_every_session_that_opens_with_it(bundled_model):
    from rtserver.engine.model import Model
    from rtserver.engine.planner import Planner
    from rtserver.engine.prompt import ChatTemplate
    from rtserver.story.render import render
    from rtserver.story.state import Story

    model = Model(bundled_model)
    try:
        planner = Planner(model, n_ctx_seq=2048, can_shift=False, counters={})
        story = Story(json.loads(CARD.read_text()), user="Ada")
        texts = [
            ChatTemplate(None).render(render(story, [], line).messages).encode()
            for line in ("Is the lamp lit?", "Any ships?", "Hello, Mira.")
        ]
        got = [planner.tokenize(t, []) for t in texts]
        assert got == [model.tokenize_bytes(t) for t in texts]  # the same tokens as tokenizing it all
        card_tokens = planner.counters["cached_prefix_tokens"] // 2
        assert card_tokens > 100 and planner.counters["cached_prefix_tokens"] == 2 * card_tokens
    finally:
        model.close()
